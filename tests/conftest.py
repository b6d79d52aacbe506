import os
import warnings

import pytest
import torch
from missing_dependency import skip_or_fail_in_ci

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


@pytest.fixture
def kernel_runs_here():
    """The kernel tests' precondition: the fused Triton kernel can run here (compiled on CUDA, or on
    CPU tensors through Triton's interpreter, ``TRITON_INTERPRET=1``). Otherwise the test is skipped
    naming what is missing, or fails under ``CI=true``."""
    from ropelab.kernels import triton_available

    if triton_available("cuda" if torch.cuda.is_available() else "cpu"):
        return
    try:
        import triton  # noqa: F401
    except ImportError as error:
        skip_or_fail_in_ci(f"the kernel tests need triton (pip install -e '.[kernels]'): {error}")
    interpret = os.environ.get("TRITON_INTERPRET")
    skip_or_fail_in_ci(
        f"the kernel tests need CUDA or TRITON_INTERPRET=1; no CUDA here, TRITON_INTERPRET={interpret!r}"
    )
