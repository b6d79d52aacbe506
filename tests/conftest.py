import os
import warnings

import pytest
import torch

# torch's own torch/utils/mkldnn.py decorates 14 methods with the deprecated torch.jit.script_method
# when it is imported, which torch.compile's inductor does on first use (compile_fx -> fx_passes ->
# fx.experimental.optimization -> utils.mkldnn). Import it once here, quietly: not ours to fix, and
# any other caller of script_method (ropelab has none) still warns.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message=r"`torch\.jit\.script_method` is", category=DeprecationWarning)
    import torch.utils.mkldnn  # noqa: F401

# Small, deterministic, and single-threaded enough that two cores are shared fairly between tests.
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)
