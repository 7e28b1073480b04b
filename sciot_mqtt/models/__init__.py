"""Split computing of int8 TFLite models: cut, cache, run head/tail, decode FOMO.

This is the public surface; the modules behind it are listed in the README's Layout.

Nothing here imports TensorFlow; only ``sciot_mqtt.models.build`` (training and Keras
conversion) does, lazily.
"""

from sciot_mqtt.models.cache import default_cache_dir, file_sha256
from sciot_mqtt.models.dataset import CLASS_NAMES, Scene, SceneObject, SyntheticScenes
from sciot_mqtt.models.decode import (
    CentroidScore,
    Detection,
    decode_detections,
    label_centroids,
    match_centroids,
    probabilities,
)
from sciot_mqtt.models.errors import ModelError, UnsupportedModelError
from sciot_mqtt.models.evaluate import EVAL_SEED, evaluate_package, score_outputs
from sciot_mqtt.models.inputs import quantize_input
from sciot_mqtt.models.manifest import Boundary, Manifest, OpInfo, TensorSpec
from sciot_mqtt.models.package import ModelPackage
from sciot_mqtt.models.reference import ReferenceProfile, load_reference_profiles
from sciot_mqtt.models.runtime import SegmentRunner, make_interpreter
from sciot_mqtt.models.zoo import zoo_metadata, zoo_model_ids, zoo_model_path

__all__ = [
    "CLASS_NAMES",
    "EVAL_SEED",
    "Boundary",
    "CentroidScore",
    "Detection",
    "Manifest",
    "ModelError",
    "ModelPackage",
    "OpInfo",
    "ReferenceProfile",
    "Scene",
    "SceneObject",
    "SegmentRunner",
    "SyntheticScenes",
    "TensorSpec",
    "UnsupportedModelError",
    "decode_detections",
    "default_cache_dir",
    "evaluate_package",
    "file_sha256",
    "label_centroids",
    "load_reference_profiles",
    "make_interpreter",
    "match_centroids",
    "probabilities",
    "quantize_input",
    "score_outputs",
    "zoo_metadata",
    "zoo_model_ids",
    "zoo_model_path",
]
