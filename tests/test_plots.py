"""Every figure function returns a Figure whose axes are all labelled."""

import pytest
from matplotlib.figure import Figure

from ropelab import RopeConfig, plots
from ropelab.analysis import relative_invariance
from ropelab.presets import preset

LLAMA2 = RopeConfig(head_dim=128, base=10000.0, max_position_embeddings=4096)

FIGURES = {
    "pair_rotation": lambda: plots.plot_pair_rotation(LLAMA2),
    "score_vs_distance": lambda: plots.plot_score_vs_distance({"a": LLAMA2, "b": preset("llama-3.1-8b")}, 5000),
    "wavelength_ladder": lambda: plots.plot_wavelength_ladder(LLAMA2, {"trained": 4096, "target": 16384}),
    "angle_coverage": lambda: plots.plot_angle_coverage(LLAMA2, 16384),
    "scaling": lambda: plots.plot_scaling({"llama3": preset("llama-3.1-8b"), "yarn": preset("deepseek-v3")}),
    "frequency_comparison": lambda: plots.plot_frequency_comparison(
        {"a": preset("llama-2-7b"), "b": preset("gpt-j-6b")}
    ),
    "invariance": lambda: plots.plot_invariance(relative_invariance(LLAMA2, offsets=(0, 10, 1000))),
    "encoding_comparison": lambda: plots.plot_encoding_comparison(),
    "out_of_range_vs_length": lambda: plots.plot_out_of_range_vs_length(LLAMA2),
    "absolute_embeddings": lambda: plots.plot_absolute_embeddings(),
    "base_bound": lambda: plots.plot_base_bound([1024, 2048], [4.3e3, 1.2e4], {"llama-2-7b": preset("llama-2-7b")}),
}


@pytest.mark.parametrize("name", list(FIGURES))
def test_figure_has_labelled_axes_and_saves(name, tmp_path):
    fig = FIGURES[name]()
    assert isinstance(fig, Figure)
    for ax in fig.axes:
        if ax.get_label() == "<colorbar>":
            continue
        assert ax.get_xlabel() and ax.get_ylabel(), f"{name}: unlabelled axis"
    path = plots.save_figure(fig, str(tmp_path / f"{name}.png"))
    assert open(path, "rb").read(4) == b"\x89PNG"
