# The int8 operators' sources, listed once: the host build (ops/CMakeLists.txt) and the
# ESP-IDF port (port/esp-idf/main/CMakeLists.txt) both include this file.
set(SCIOT_OPS_SOURCES
    ${CMAKE_CURRENT_LIST_DIR}/src/model.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ops_common.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ops_conv.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ops_elementwise.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ops_pool.c
    ${CMAKE_CURRENT_LIST_DIR}/src/ops_shape.c
    ${CMAKE_CURRENT_LIST_DIR}/src/requant.c
    ${CMAKE_CURRENT_LIST_DIR}/src/kernels_conv.c
    ${CMAKE_CURRENT_LIST_DIR}/src/kernels_elementwise.c
    ${CMAKE_CURRENT_LIST_DIR}/src/kernels_pool.c
    ${CMAKE_CURRENT_LIST_DIR}/src/kernels_shape.c
    ${CMAKE_CURRENT_LIST_DIR}/src/kernels_softmax.c)
