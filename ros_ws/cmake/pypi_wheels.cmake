# Build ros_ws against the ROS 2 wheels from PyPI (pip install 'medgw[ros-build]'):
#   colcon build --cmake-args -DCMAKE_PROJECT_INCLUDE=$PWD/cmake/pypi_wheels.cmake
# The wheels' exported CMake targets (builtin_interfaces::*__rosidl_generator_py, ...) name
# the include directories of the machine that built them (/opt/python/cpXY-cpXY/include/
# pythonX.Y and its numpy), which do not exist here, and CMake refuses to generate. After
# the project is configured, point those directories at this Python's and numpy's.
# A ROS 2 install from Debian packages or source needs none of this.
function(_medgw_fix_wheel_include_dirs)
  find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
  get_property(targets DIRECTORY "${CMAKE_SOURCE_DIR}" PROPERTY IMPORTED_TARGETS)
  foreach(target IN LISTS targets)
    get_target_property(dirs ${target} INTERFACE_INCLUDE_DIRECTORIES)
    if(dirs)
      list(TRANSFORM dirs REPLACE "^/opt/python/[^/]+/include/python[0-9.]+$"
           "${Python3_INCLUDE_DIRS}")
      list(TRANSFORM dirs REPLACE "^/opt/python/[^/]+/.*/numpy/.*include$"
           "${Python3_NumPy_INCLUDE_DIRS}")
      set_target_properties(${target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${dirs}")
    endif()
  endforeach()
endfunction()
cmake_language(DEFER DIRECTORY "${CMAKE_SOURCE_DIR}" CALL _medgw_fix_wheel_include_dirs)
