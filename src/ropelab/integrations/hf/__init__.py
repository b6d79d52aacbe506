"""Make a transformers model use ropelab for its rotary embedding (see :mod:`.patching`)."""

from ropelab.integrations.hf.patching import (
    ROTARY_CLASS_NAME,
    HFAngleTableAdapter,
    HFChannelTableAdapter,
    HFComplexRotaryAdapter,
    HFCoordinateAdapter,
    HFFeatureGridAdapter,
    HFFixedGridAdapter,
    HFPatchCentreAdapter,
    HFRotaryAdapter,
    HFStackedTableAdapter,
    HFTimestampAdapter,
    PatchError,
    patch,
    rotary_output_kind,
    unpatch,
)

__all__ = ["HFAngleTableAdapter", "HFChannelTableAdapter", "HFComplexRotaryAdapter", "HFCoordinateAdapter",
           "HFFeatureGridAdapter", "HFFixedGridAdapter", "HFPatchCentreAdapter", "HFRotaryAdapter",
           "HFStackedTableAdapter", "HFTimestampAdapter", "PatchError", "ROTARY_CLASS_NAME", "patch",
           "rotary_output_kind", "unpatch"]
