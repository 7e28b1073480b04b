"""The TFLite Micro operators a model needs, as the C++ that registers them on the ESP32.

esp-tflite-micro's ``tflite::MicroMutableOpResolver<N>`` links only the kernels it is told
to add, one ``AddXxx()`` call per builtin operator. ``tflm_ops_header`` writes those calls for
exactly the operators of one model (from its flatbuffer, whatever the C kernels of
``firmware-bridge/ops`` support), so the firmware runs any exported model TFLM can run.
"""

from __future__ import annotations

from sciot_mqtt.models.errors import UnsupportedModelError
from sciot_mqtt.models.package import ModelPackage

__all__ = ["TFLM_ADD_METHODS", "tflm_ops", "tflm_ops_header"]

# Builtin operator -> its method of tflite::MicroMutableOpResolver, as declared in
# tensorflow/lite/micro/micro_mutable_op_resolver.h of esp-tflite-micro 1.3/1.4.
TFLM_ADD_METHODS = {
    "ABS": "AddAbs",
    "ADD": "AddAdd",
    "ADD_N": "AddAddN",
    "ARG_MAX": "AddArgMax",
    "ARG_MIN": "AddArgMin",
    "AVERAGE_POOL_2D": "AddAveragePool2D",
    "BATCH_MATMUL": "AddBatchMatMul",
    "BATCH_TO_SPACE_ND": "AddBatchToSpaceNd",
    "BROADCAST_ARGS": "AddBroadcastArgs",
    "BROADCAST_TO": "AddBroadcastTo",
    "CAST": "AddCast",
    "CEIL": "AddCeil",
    "CONCATENATION": "AddConcatenation",
    "CONV_2D": "AddConv2D",
    "COS": "AddCos",
    "CUMSUM": "AddCumSum",
    "DEPTHWISE_CONV_2D": "AddDepthwiseConv2D",
    "DEPTH_TO_SPACE": "AddDepthToSpace",
    "DEQUANTIZE": "AddDequantize",
    "DIV": "AddDiv",
    "ELU": "AddElu",
    "EMBEDDING_LOOKUP": "AddEmbeddingLookup",
    "EQUAL": "AddEqual",
    "EXP": "AddExp",
    "EXPAND_DIMS": "AddExpandDims",
    "FILL": "AddFill",
    "FLOOR": "AddFloor",
    "FLOOR_DIV": "AddFloorDiv",
    "FLOOR_MOD": "AddFloorMod",
    "FULLY_CONNECTED": "AddFullyConnected",
    "GATHER": "AddGather",
    "GATHER_ND": "AddGatherNd",
    "GREATER": "AddGreater",
    "GREATER_EQUAL": "AddGreaterEqual",
    "HARD_SWISH": "AddHardSwish",
    "L2_NORMALIZATION": "AddL2Normalization",
    "L2_POOL_2D": "AddL2Pool2D",
    "LEAKY_RELU": "AddLeakyRelu",
    "LESS": "AddLess",
    "LESS_EQUAL": "AddLessEqual",
    "LOG": "AddLog",
    "LOGICAL_AND": "AddLogicalAnd",
    "LOGICAL_NOT": "AddLogicalNot",
    "LOGICAL_OR": "AddLogicalOr",
    "LOGISTIC": "AddLogistic",
    "LOG_SOFTMAX": "AddLogSoftmax",
    "MAXIMUM": "AddMaximum",
    "MAX_POOL_2D": "AddMaxPool2D",
    "MEAN": "AddMean",
    "MINIMUM": "AddMinimum",
    "MIRROR_PAD": "AddMirrorPad",
    "MUL": "AddMul",
    "NEG": "AddNeg",
    "NOT_EQUAL": "AddNotEqual",
    "PACK": "AddPack",
    "PAD": "AddPad",
    "PADV2": "AddPadV2",
    "PRELU": "AddPrelu",
    "QUANTIZE": "AddQuantize",
    "REDUCE_MAX": "AddReduceMax",
    "REDUCE_MIN": "AddReduceMin",
    "RELU": "AddRelu",
    "RELU6": "AddRelu6",
    "RESHAPE": "AddReshape",
    "RESIZE_BILINEAR": "AddResizeBilinear",
    "RESIZE_NEAREST_NEIGHBOR": "AddResizeNearestNeighbor",
    "REVERSE_V2": "AddReverseV2",
    "ROUND": "AddRound",
    "RSQRT": "AddRsqrt",
    "SELECT_V2": "AddSelectV2",
    "SHAPE": "AddShape",
    "SIN": "AddSin",
    "SLICE": "AddSlice",
    "SOFTMAX": "AddSoftmax",
    "SPACE_TO_BATCH_ND": "AddSpaceToBatchNd",
    "SPACE_TO_DEPTH": "AddSpaceToDepth",
    "SPLIT": "AddSplit",
    "SPLIT_V": "AddSplitV",
    "SQRT": "AddSqrt",
    "SQUARE": "AddSquare",
    "SQUARED_DIFFERENCE": "AddSquaredDifference",
    "SQUEEZE": "AddSqueeze",
    "STRIDED_SLICE": "AddStridedSlice",
    "SUB": "AddSub",
    "SUM": "AddSum",
    "SVDF": "AddSvdf",
    "TANH": "AddTanh",
    "TRANSPOSE": "AddTranspose",
    "TRANSPOSE_CONV": "AddTransposeConv",
    "UNIDIRECTIONAL_SEQUENCE_LSTM": "AddUnidirectionalSequenceLSTM",
    "UNPACK": "AddUnpack",
    "ZEROS_LIKE": "AddZerosLike",
}


def tflm_ops(package: ModelPackage) -> list[str]:
    """The model's builtin operators, each once, in order of first use.

    Raises ``UnsupportedModelError`` naming every operator TFLite Micro has no kernel for.
    """
    names = list(dict.fromkeys(op.op for op in package.ops))
    missing = [name for name in names if name not in TFLM_ADD_METHODS]
    if missing:
        raise UnsupportedModelError(
            f"esp-tflite-micro has no builtin kernel for {', '.join(missing)}"
        )
    return names


def tflm_ops_header(head: str, ident: str, ops: list[str]) -> str:
    """``<ident>_tflm_ops.h``: the resolver type and the function that registers ``ops``."""
    guard = f"SCIOT_{ident.upper()}_TFLM_OPS_H"
    calls = "\n".join(f"        resolver.{TFLM_ADD_METHODS[op]}() == kTfLiteOk &&" for op in ops)
    return (
        f"{head}#ifndef {guard}\n#define {guard}\n\n"
        '#include "tensorflow/lite/micro/micro_mutable_op_resolver.h"\n\n'
        f"/* The {len(ops)} builtin operators of the model: {', '.join(ops)}. */\n"
        f"typedef tflite::MicroMutableOpResolver<{len(ops)}> sciot_{ident}_tflm_resolver;\n\n"
        f"inline bool sciot_{ident}_tflm_add_ops(sciot_{ident}_tflm_resolver &resolver)\n{{\n"
        f"    return\n{calls}\n        true;\n}}\n\n#endif\n"
    )
