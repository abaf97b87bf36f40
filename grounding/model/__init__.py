"""Med-GLIP: detection as phrase grounding (GLIP / GLIPv2) with modality-aware prompts and a label hierarchy."""
from grounding.model.builder import GrounderConfig, build_grounder, tiny_config
from grounding.model.medglip import MedGLIP
from grounding.model.outputs import GroundingOutput
from grounding.model.postprocess import RegionPredictions, predict_regions
from grounding.model.prompts import EncodedPrompts, build_prompt, chunk_phrases, encode_prompts

__all__ = [
    "EncodedPrompts",
    "GrounderConfig",
    "GroundingOutput",
    "MedGLIP",
    "RegionPredictions",
    "build_grounder",
    "build_prompt",
    "chunk_phrases",
    "encode_prompts",
    "predict_regions",
    "tiny_config",
]
