"""Datasets, transforms, samplers and loaders for training and evaluation."""
from .datasets import (DataError, DatasetInfo, TensorImageDataset, build_datasets, load_cifar, load_digits,
                       load_imagefolder, record_dataset_fields)
from .registry import DatasetSpec, dataset_names, get_dataset, register_dataset
from .samplers import ShardedEvalSampler, ShardedTrainSampler
from .transforms import SeededDataset, build_mixup, build_transform
from .loaders import build_eval_loader, build_loaders, set_train_epoch

__all__ = [
    "DataError",
    "DatasetInfo",
    "DatasetSpec",
    "dataset_names",
    "get_dataset",
    "register_dataset",
    "TensorImageDataset",
    "SeededDataset",
    "ShardedEvalSampler",
    "ShardedTrainSampler",
    "build_datasets",
    "record_dataset_fields",
    "build_eval_loader",
    "build_loaders",
    "build_mixup",
    "build_transform",
    "set_train_epoch",
    "load_cifar",
    "load_digits",
    "load_imagefolder",
]
