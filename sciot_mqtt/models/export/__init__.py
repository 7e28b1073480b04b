"""Export a prepared model for the C firmware: a "sciot model blob" and C arrays.

The blob is what ``firmware-bridge/ops`` (``sciot_ops.h``) runs: tensors, operators with
every constant the int8 kernels derive at ``Prepare`` time, and each split point's live
tensors. Modules:

- ``format``: the blob's binary layout (documented field by field), enums, the writer
- ``source``: the package's flatbuffer read for export (operators, tensors with data)
- ``quant``: quantization maths done the way LiteRT does it (multipliers, roundings,
  activation bounds, the softmax table)
- ``tables``: the lookup tables and thresholds of LOGISTIC, TANH, QUANTIZE and DEQUANTIZE,
  HARD_SWISH's fixed-point constants
- ``context``: ``OpContext``, one operator as its encoder sees it
- ``ops``: the ``ENCODERS`` table (one encoder per supported builtin operator, by family in
  ``ops_conv``, ``ops_elementwise``, ``ops_pool``, ``ops_shape``) and the refusal that lists
  every operator a model needs and the C kernels lack
- ``arena``: static offsets of the activations, shared by every split
- ``blob``: ``export_blob``, the blob assembled
- ``rounding``: which rounding LiteRT's CONV_2D uses on this machine, measured
- ``emit_c``: ``export_c``, the blob and the op segments as C sources
"""

from sciot_mqtt.models.export.blob import export_blob
from sciot_mqtt.models.export.emit_c import ExportedFiles, c_identifier, export_c
from sciot_mqtt.models.export.format import BLOB_MAGIC, BLOB_VERSION
from sciot_mqtt.models.export.quant import (
    ROUNDING_DOUBLE,
    ROUNDING_DOUBLE_TIES_UP,
    ROUNDING_SINGLE,
    ROUNDINGS,
    requantize,
)
from sciot_mqtt.models.export.rounding import detect_conv_rounding

__all__ = [
    "BLOB_MAGIC",
    "BLOB_VERSION",
    "ROUNDINGS",
    "ROUNDING_DOUBLE",
    "ROUNDING_DOUBLE_TIES_UP",
    "ROUNDING_SINGLE",
    "ExportedFiles",
    "c_identifier",
    "detect_conv_rounding",
    "export_blob",
    "export_c",
    "requantize",
]
