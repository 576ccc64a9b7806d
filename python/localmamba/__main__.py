import sys

if sys.argv[1:] == ["--cmake-dir"]:  # like `python -m pybind11 --cmakedir`, for other CMake projects
    from . import get_cmake_dir

    print(get_cmake_dir())
    sys.exit(0)

from .cli import main

sys.exit(main())
