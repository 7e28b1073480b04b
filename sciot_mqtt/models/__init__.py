"""Split computing of int8 TFLite models: cut, cache, run head/tail, decode FOMO.

Nothing here imports TensorFlow; only ``sciot_mqtt.models.build`` (training and Keras
conversion) does, lazily.
"""

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
from sciot_mqtt.models.package import (
    Boundary,
    ModelPackage,
    OpInfo,
    TensorSpec,
    default_cache_dir,
    file_sha256,
)
from sciot_mqtt.models.reference import ReferenceProfile, load_reference_profiles
from sciot_mqtt.models.runtime import SegmentRunner, make_interpreter
from sciot_mqtt.models.zoo import zoo_metadata, zoo_model_ids, zoo_model_path

__all__ = [
    "CLASS_NAMES",
    "EVAL_SEED",
    "Boundary",
    "CentroidScore",
    "Detection",
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
    "score_outputs",
    "zoo_metadata",
    "zoo_model_ids",
    "zoo_model_path",
]
