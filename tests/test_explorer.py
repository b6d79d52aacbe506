"""``ropelab explore``: the page is offline, refuses bad input visibly, and shows the library's numbers.

The browser tests open the written page in headless Chromium (system package, driven by
Playwright), set many settings through ``window.ropelab.set`` and compare ``window.ropelab.state()``
with :func:`ropelab.rope_frequencies` and :mod:`ropelab.analysis`. Without a browser they are
skipped with the missing piece named; with ``CI=true`` a missing browser is a failure.
"""

from __future__ import annotations

import argparse
import json
import math

import pytest
import torch
from headless_chromium import CHROMIUM_ARGS, chromium_path
from missing_dependency import skip_or_fail_in_ci

from ropelab import RopeConfig, rope_frequencies, rotate
from ropelab.analysis import (
    critical_dimension,
    distance_grid,
    expected_score,
    out_of_range_pairs,
    pair_wavelengths,
    roformer_decay_bound,
    scaling_profile,
)
from ropelab.cli import main
from ropelab.encodings.sinusoidal import sinusoidal_table
from ropelab.explain import explorer
from ropelab.extension import extension_config
from ropelab.presets import preset, preset_configs

# The preset cards on the page: every preset, one card per layer type for per-layer-type ones
# (gemma-3-12b-it:sliding_attention, ...), for the rope types the page computes (multi-axis cards:
# through their one-axis view).
PAGE_CARDS = [
    name
    for name, cfg in preset_configs().items()
    if explorer.one_axis_view(cfg)[0].rope_type in explorer.PAGE_ROPE_TYPES
]

REL = 1e-9  # the page computes in float64; only pow/cos/sin may differ by an ulp


def _browser_or_skip() -> str:
    missing = []
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        missing.append("playwright (pip install -e '.[browser]')")
    chromium = chromium_path()
    if chromium is None:
        missing.append("chromium (apt-get install -y chromium)")
    if missing:
        skip_or_fail_in_ci("browser tests need " + " and ".join(missing))
    return chromium


@pytest.fixture(scope="module")
def browser():
    chromium = _browser_or_skip()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        instance = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def page_path(tmp_path_factory):
    return explorer.write_explorer(None, tmp_path_factory.mktemp("explorer") / "explorer.html")


def _open(browser, path, log=None):
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    if log is not None:
        page.on("console", lambda message: log.append(("console." + message.type, message.text)))
        page.on("pageerror", lambda error: log.append(("pageerror", str(error))))
        page.on("request", lambda request: log.append(("request", request.url)))
    page.goto(path.resolve().as_uri())
    page.wait_for_function("window.ropelab !== undefined")
    return page


@pytest.fixture(scope="module")
def page(browser, page_path):
    page = _open(browser, page_path)
    yield page
    page.close()


def _set(page, settings):
    return page.evaluate("s => { window.ropelab.set(s); return window.ropelab.state(); }", settings)


# ---------------------------------------------------------------- the library's side of each setting


def _configs(s: dict) -> tuple[RopeConfig, RopeConfig]:
    """The trained and the target RopeConfig a page setting stands for (written independently of the JS)."""
    rotary_dim = max(2, 2 * math.floor(s["head_dim"] * s["rotary_fraction"] / 2 + 1e-9))
    head = dict(head_dim=s["head_dim"], rotary_dim=rotary_dim, base=s["base"], layout=s["layout"])
    trained = RopeConfig(**head, max_position_embeddings=s["T"])
    factor = s["factor"] if s["factor"] is not None else max(1.0, s["N"] / s["T"])
    method = s["method"]
    scaled = dict(head, factor=factor, max_position_embeddings=s["N"])
    if method == "none":
        return trained, trained
    if method in ("linear", "ntk"):
        return trained, RopeConfig(**scaled, rope_type=method)
    if method == "dynamic":
        return trained, RopeConfig(**head, rope_type="dynamic", factor=factor, max_position_embeddings=s["T"])
    if method == "yarn":
        return trained, RopeConfig(
            **scaled,
            rope_type="yarn",
            original_max_position_embeddings=s["T"],
            beta_fast=s["beta_fast"],
            beta_slow=s["beta_slow"],
            mscale=s["mscale"] or None,
            mscale_all_dim=s["mscale_all_dim"] or None,
            truncate=s["truncate"],
            attention_factor=s["attention_factor"],
        )
    if method == "llama3":
        return trained, RopeConfig(
            **scaled,
            rope_type="llama3",
            original_max_position_embeddings=s["T"],
            low_freq_factor=s["low_freq_factor"],
            high_freq_factor=s["high_freq_factor"],
        )
    source = preset(s["longrope_from"])
    return trained, RopeConfig(
        **scaled,
        rope_type="longrope",
        original_max_position_embeddings=s["T"],
        short_factor=source.short_factor,
        long_factor=source.long_factor,
        attention_factor=s["attention_factor"],
    )


def _close(page_values, library_values, scale=None):
    got = torch.tensor(page_values, dtype=torch.float64)
    want = torch.as_tensor(library_values, dtype=torch.float64).flatten()
    assert got.shape == want.shape
    # Relative error; sums with cancellation (scores near 0) are measured against their terms' size.
    reference = want.abs() if scale is None else torch.full_like(want, float(scale))
    bad = (got - want).abs() > REL * reference.clamp_min(1e-300)
    assert not bad.any(), f"first mismatch at {int(bad.nonzero()[0])}: page {got[bad][0]!r} library {want[bad][0]!r}"


def _check_against_library(st: dict) -> None:
    s = st["settings"]
    trained, target = _configs(s)
    assert RopeConfig(**st["config"]) == target, "the page's config differs from the setting's meaning"
    assert st["rotary_dim"] == target.rotary_dim
    T, N, R, D = s["T"], s["N"], target.rotary_dim, target.head_dim

    inv_freq, attention = rope_frequencies(target, N)
    _close(st["inv_freq"], inv_freq)
    _close([st["attention_factor"]], [attention])
    _close(st["inv_freq_trained"], rope_frequencies(trained, T)[0])
    _close(st["wavelengths"], pair_wavelengths(target, N))
    _close(st["wavelengths_trained"], pair_wavelengths(trained, T))
    if (
        s["method"] != "longrope"
        and s["beta_fast"] == 32
        and s["beta_slow"] == 1
        and not s["mscale"]
        and s["attention_factor"] is None
        and s["truncate"]
        and (s["low_freq_factor"], s["high_freq_factor"]) == (1, 4)
    ):
        # ropelab.extension, the one definition of "extend T by factor with method M", agrees too.
        method = "extrapolate" if s["method"] == "none" else s["method"]
        via_extension = extension_config(trained, method, T, st["factor"] or 1.0)
        _close(st["inv_freq"], rope_frequencies(via_extension, N)[0])

    assert st["out_of_range"] == out_of_range_pairs(trained, N, trained_length=T, target=target).indices
    assert st["out_of_range_none"] == out_of_range_pairs(trained, N, trained_length=T).indices
    assert st["critical_dim"] == critical_dimension(R, s["base"], T)

    profile = scaling_profile(target, seq_len=N)
    _close(st["scale"], 1.0 / profile.ratio)
    if profile.ramp is None:
        assert st["ramp"] is None
    else:
        _close(st["ramp"], profile.ramp, scale=1.0)

    distances = distance_grid(N, 512)
    assert st["distances"] == distances.tolist()
    size = 2 * attention**2 * (R // 2) + (D - R)  # sum of the terms' magnitudes
    _close(st["decay"], expected_score(target, distances, seq_len=N).expected, scale=size)
    _close(st["decay_trained"], expected_score(trained, distances, seq_len=T).expected, scale=2 * (R // 2) + D - R)
    _close(st["bound"], roformer_decay_bound(target, distances, seq_len=N).values, scale=R // 2)

    _check_clock_and_layout(st, target)
    _check_sinusoidal(st, target)
    _check_precision(st, inv_freq)
    for key, value in st.items():
        if key != "settings":
            assert not (isinstance(value, float) and not math.isfinite(value)), key


def _check_clock_and_layout(st: dict, target: RopeConfig) -> None:
    s, D, R = st["settings"], target.head_dim, target.rotary_dim
    # Layout: rotate every basis vector by one position with the library; each rotated channel's
    # partner (the other nonzero output) must be the channel the page puts in the same pair.
    eye = torch.eye(D, dtype=torch.float64)[None, None]
    turned = rotate(eye, torch.ones(D, dtype=torch.int64), target.replace(rope_type="default", attention_factor=None))[
        0, 0
    ]
    moved = (turned != 0) & ~torch.eye(D, dtype=torch.bool)
    for channel, pair in enumerate(st["channel_pair"]):
        partners = moved[channel].nonzero().flatten().tolist()
        if pair < 0:
            assert channel >= R and partners == []
        else:
            page_partners = [c for c, p in enumerate(st["channel_pair"]) if p == pair and c != channel]
            assert partners == page_partners, (channel, partners, page_partners)
    # Clock: q = k = (1, 0) in pair `pair` (its first channel), rotated by the library at m + offset, n + offset.
    first = st["channel_pair"].index(s["pair"])
    q = torch.zeros(1, 1, 1, D, dtype=torch.float64)
    q[..., first] = 1.0
    dots = []
    for offset in (s["offset"], 0):
        rq = rotate(q, torch.tensor([s["m"] + offset]), target, seq_len=s["N"])
        rk = rotate(q, torch.tensor([s["n"] + offset]), target, seq_len=s["N"])
        dots.append(float((rq * rk).sum()))
    # angles near 2**31 carry float64 rounding ~ position * 2**-53: compare at that absolute level.
    slack = 1e-9 + 4 * (max(s["m"], s["n"]) + s["offset"]) * 2.0**-53
    assert abs(st["dot"] - dots[0]) <= slack and abs(st["dot_without_offset"] - dots[1]) <= 1e-9


def _check_sinusoidal(st: dict, target: RopeConfig) -> None:
    s, R = st["settings"], target.rotary_dim
    positions = torch.tensor(st["sinus_positions"])
    encoding = sinusoidal_table(positions, R, s["base"])
    for channel in st["sinus_channels"]:
        _close(channel["values"], encoding[:, 2 * channel["pair"]], scale=1.0)
    query = sinusoidal_table(positions + s["m"], R, s["base"])
    key = sinusoidal_table(positions + s["n"], R, s["base"])
    _close(st["sinus_score"], ((1 + query) * (1 + key)).sum(-1), scale=4 * R)
    relative = expected_score(target, torch.tensor([s["m"] - s["n"]]), seq_len=s["N"]).expected
    _close(
        st["rope_score"], relative.expand(len(positions)), scale=2 * st["attention_factor"] ** 2 * R + target.head_dim
    )


def _check_precision(st: dict, inv_freq: torch.Tensor) -> None:
    position = torch.tensor([st["precision_position"]])
    exact = position.double()[:, None] * inv_freq[None]
    fp32 = (position.float()[:, None] * inv_freq.float()[None]).double()  # ropelab.demo.precision_rows
    wrapped = torch.remainder(fp32 - exact + math.pi, 2 * math.pi) - math.pi
    # The exact angle is itself a float64 product: an ulp of it (position * theta * 2**-52) is the
    # resolution at which the two sides can agree, plus that of the wrap (an ulp of pi, 2**-51).
    got = torch.tensor(st["f32_angle_error"], dtype=torch.float64)
    bad = (got - wrapped.abs().flatten()).abs() > 4 * exact.abs().flatten() * 2.0**-52 + 2 * 2.0**-51
    assert not bad.any(), (
        st["settings"],
        bad.nonzero().flatten().tolist(),
        got[bad].tolist(),
        wrapped.flatten()[bad].tolist(),
    )
    cos_error = (torch.cos(exact).float().double() - torch.cos(exact)).abs().flatten()
    got = torch.tensor(st["ropelab_cos_error"], dtype=torch.float64)
    assert ((got - cos_error).abs() <= 4 * exact.abs().flatten() * 2.0**-52 + 1e-15).all()


# Applied in order, each on top of the previous state: every rope type, both layouts, partial
# rotation, several presets, parameters and positions.
SETTINGS = [{"preset": name} for name in PAGE_CARDS] + [
    {"preset": "llama-2-7b", "N": 8192, "method": "none"},
    {"method": "linear"},
    {"method": "ntk", "N": 16384},
    {"method": "dynamic", "N": 32768},
    {"method": "dynamic", "N": 1000},  # seq_len below T: the default frequencies
    {"method": "yarn", "N": 8192},
    {"method": "yarn", "beta_fast": 16, "beta_slow": 2, "mscale": 0.707, "mscale_all_dim": 1.0},
    {"method": "yarn", "truncate": False, "attention_factor": 1.2, "factor": 3.5},
    {"method": "llama3", "factor": None, "attention_factor": None, "N": 65536},
    {"method": "llama3", "low_freq_factor": 2, "high_freq_factor": 8},
    {"layout": "interleaved", "method": "ntk", "m": 100, "n": 3, "offset": 123456, "pair": 17},
    {"rotary_fraction": 0.5, "method": "yarn", "pair": 20},
    {"head_dim": 100, "rotary_fraction": 0.3, "method": "linear"},  # rotary_dim 30 of 100
    {"head_dim": 64, "rotary_fraction": 1 / 32, "method": "ntk"},  # one pair: ntk falls back to linear
    {"method": "dynamic", "N": 20000},
    {
        "head_dim": 96,
        "rotary_fraction": 1,
        "method": "longrope",
        "longrope_from": "phi-3-mini-128k-instruct",
        "N": 8192,
    },
    {"N": 4096},  # seq_len = T: the short factors
    {"preset": "phi-3-mini-128k-instruct", "N": 4000},
    {"preset": "gpt-neox-20b", "method": "yarn", "N": 8192},
    {"preset": "gpt-j-6b", "method": "llama3", "N": 16384, "offset": 2**31 - 1},
    {"preset": "qwen2-7b", "method": "linear", "T": 32768, "N": 131072, "base": 5e6},
    {"preset": "deepseek-v3", "m": 4000, "n": 0, "offset": 2**20},
    {"preset": "llama-3.1-8b", "layout": "interleaved", "N": 200000},
    {"preset": "gemma-7b", "method": "dynamic", "T": 8192, "N": 8193},
]


def _card_messages(settings: dict, st: dict) -> list[str]:
    """The one message a card without a trained length brings (axial vision towers); none otherwise."""
    name = settings.get("preset")
    if name is None or preset(name).trained_length is not None:
        return []
    return [
        f"{name} gives no trained length (max_position_embeddings): T set to {st['settings']['T']}, "
        "change it to the model's"
    ]


def test_page_matches_the_library_for_every_setting(page):
    assert len(SETTINGS) >= 30
    covered = set()
    for settings in SETTINGS:
        st = _set(page, settings)
        assert st["messages"] == _card_messages(settings, st), (settings, st["messages"])
        for key, value in settings.items():
            assert st["settings"][key] == value, (key, value, st["settings"][key])
        _check_against_library(st)
        covered.add(st["config"]["rope_type"])
        covered.add(st["settings"]["layout"])
        covered.add("partial" if st["rotary_dim"] < st["settings"]["head_dim"] else "full")
    assert covered >= {
        "default",
        "linear",
        "ntk",
        "dynamic",
        "yarn",
        "llama3",
        "longrope",
        "half",
        "interleaved",
        "partial",
        "full",
    }


def test_each_preset_is_the_library_preset(page):
    for name in PAGE_CARDS:
        st = _set(page, {"preset": name})
        cfg, _ = explorer.one_axis_view(preset(name))  # multi-axis cards are drawn through their one-axis view
        s = st["settings"]
        assert (s["head_dim"], st["rotary_dim"], s["base"], s["layout"]) == (
            cfg.head_dim,
            cfg.rotary_dim,
            cfg.base,
            cfg.layout,
        )
        if cfg.rope_type != "default":  # the card's own scaling, at its own lengths
            assert st["config"]["rope_type"] == cfg.rope_type
            _close(st["inv_freq"], rope_frequencies(cfg, s["N"])[0])
            _close([st["attention_factor"]], [rope_frequencies(cfg, s["N"])[1]])


MULTI_AXIS = {
    "kimi-k2.5-like": RopeConfig(head_dim=72, rope_type="axial", axial_order=(1, 0), axial_composition="interleaved"),
    "minimax-m3-like": RopeConfig(head_dim=80, rotary_dim=78, rope_type="axial", axial_order=(0, 1, 2)),
    "pixtral-like": RopeConfig(head_dim=64, rope_type="axial", axial_frequencies="alternating"),
    "qwen2.5-vl-text": preset("qwen2.5-vl-7b-instruct"),
}


@pytest.mark.parametrize("name", sorted(MULTI_AXIS))
def test_one_axis_view_follows_the_shown_pairs_exactly(name):
    cfg = MULTI_AXIS[name]
    view, note = explorer.one_axis_view(cfg)
    assert view.num_axes == 1 and note
    if cfg.mrope_section is not None:  # text tokens: the same position on every row
        x, positions = torch.randn(1, 2, 9, cfg.head_dim, dtype=torch.float64), torch.arange(9) * 1000
        assert torch.equal(rotate(x, positions, view), rotate(x, positions, cfg))
        return
    shown = [i for i, axis in enumerate(cfg.pair_axes) if axis == cfg.axial_order[0]]
    assert torch.equal(rope_frequencies(view)[0], rope_frequencies(cfg)[0][shown])
    assert view.rotary_dim == cfg.rotary_dim // cfg.num_axes and f"{len(shown)} pairs" in note
    assert ("pass through" in note) == (cfg.rotary_dim < cfg.head_dim)


def test_multi_axis_cards_render_their_one_axis_view_with_a_note(browser, tmp_path):
    for name, cfg in MULTI_AXIS.items():
        log: list[tuple[str, str]] = []
        page = _open(browser, explorer.write_explorer(cfg, tmp_path / f"{name}.html"), log)
        st = page.evaluate("window.ropelab.state()")
        view, note = explorer.one_axis_view(cfg)
        assert RopeConfig(**st["config"]).replace(max_position_embeddings=None) == view.replace(
            max_position_embeddings=None, source=None
        ), name
        _close(st["inv_freq"], rope_frequencies(view)[0])
        assert note in page.inner_text("#card")
        assert [entry for entry in log if entry[0] in ("console.error", "console.warning", "pageerror")] == []
        assert _non_finite(page) == []
        page.close()


def test_page_is_offline_and_error_free(browser, page_path):
    log: list[tuple[str, str]] = []
    page = _open(browser, page_path, log)
    page.evaluate("window.ropelab.set({method: 'yarn', N: 32768})")
    page.select_option("#ctl-method", "llama3")
    _drag_q(page)
    page.close()
    requests = [url for kind, url in log if kind == "request"]
    assert requests == [page_path.resolve().as_uri()]
    problems = [entry for entry in log if entry[0] in ("console.error", "console.warning", "pageerror")]
    assert problems == []
    html = page_path.read_text()
    assert "<script src" not in html and "<link" not in html


def _drag_q(page):
    """Dragging q round the clock by 2 radians moves m by 2 positions when theta = 1 (pair 0)."""
    st = _set(page, {"preset": "llama-2-7b", "pair": 0, "m": 12, "n": 5, "offset": 0})
    assert st["theta"] == 1.0
    box = page.locator("#clock").bounding_box()
    cx, cy, r = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2, box["width"] * 0.35
    at = lambda angle: (cx + r * math.cos(angle), cy - r * math.sin(angle))  # noqa: E731
    page.mouse.move(*at(12.0))
    page.mouse.down()
    page.mouse.move(*at(13.0))
    page.mouse.move(*at(14.0))
    page.mouse.up()
    assert page.evaluate("window.ropelab.state().settings.m") == 14


def _non_finite(page) -> list[str]:
    return page.evaluate("""() => {
        const bad = [];
        const walk = (x, path) => {
            if (typeof x === 'number' && !Number.isFinite(x)) bad.push(path);
            else if (x && typeof x === 'object') for (const [k, v] of Object.entries(x)) walk(v, path + '.' + k);
        };
        walk(window.ropelab.state(), 'state');
        return bad;
    }""")


def test_out_of_range_values_are_clamped_or_refused_visibly(page):
    _set(page, {"preset": "llama-2-7b"})
    st = _set(page, {"base": -5})
    assert st["settings"]["base"] == 2 and "base=-5" in st["messages"][0] and "clamped" in st["messages"][0]
    assert page.is_visible("#message") and "base=-5" in page.inner_text("#message")
    assert _non_finite(page) == []

    for bad in ({"N": float("nan")}, {"m": "many"}, {"method": "rope-me"}, {"factor": float("inf")}):
        before = page.evaluate("window.ropelab.state().settings")
        st = _set(page, bad)
        assert st["settings"] == before and "refused" in st["messages"][0], bad
        assert _non_finite(page) == []
    st = _set(page, {"method": "llama3", "low_freq_factor": 4, "high_freq_factor": 1})
    assert st["settings"]["method"] != "llama3" and "high_freq_factor" in page.inner_text("#message")
    st = _set(page, {"head_dim": 64, "method": "longrope"})  # phi-3's 48 factors do not fit 32 pairs
    assert st["settings"]["method"] != "longrope" and "longrope" in page.inner_text("#message")

    # Through the control itself: a negative trained context is clamped to 1, and said so.
    page.fill("#ctl-T", "-100")
    page.dispatch_event("#ctl-T", "change")
    st = page.evaluate("window.ropelab.state()")
    assert st["settings"]["T"] == 1 and "T=-100" in page.inner_text("#message")
    assert page.input_value("#ctl-T") == "1"
    assert _non_finite(page) == []
    page.fill("#ctl-m", "1e400")  # parses to Infinity
    page.dispatch_event("#ctl-m", "change")
    assert "refused" in page.inner_text("#message") and _non_finite(page) == []


# ---------------------------------------------------------------- no browser needed


def test_page_data_serialises_the_presets():
    data = json.loads(json.dumps(explorer.page_data(preset("gpt-j-6b").replace(base=20000.0))))
    names = [p["name"] for p in data["presets"]]
    assert names == [explorer.CLI_NAME, *PAGE_CARDS] and data["initial"] == explorer.CLI_NAME
    assert {"gemma-3-12b-it:sliding_attention", "gemma-3-12b-it:full_attention"} <= set(names)
    for entry in data["presets"][1:]:
        assert RopeConfig(**entry["config"]) == preset(entry["name"])
    assert RopeConfig(**data["presets"][0]["config"]).base == 20000.0


def test_cli_writes_one_self_contained_file(tmp_path, capsys):
    out = tmp_path / "sub" / "page.html"
    assert main(["explore", "llama-3.1-8b", "--out", str(out)]) == 0
    assert capsys.readouterr().out.strip() == str(out)
    html = out.read_text()
    assert "uPlot" in html and "</script>" in html and "http://" not in html.replace("http://www.w3.org", "")
    config = tmp_path / "config.json"
    config.write_text(json.dumps(preset("deepseek-v3").to_hf()))
    assert main(["explore", str(config), "--out", str(tmp_path / "c.html")]) == 0
    explorer.demo(argparse.Namespace(out=str(tmp_path / "demo")))
    assert (tmp_path / "demo" / "explorer.html").exists()


@pytest.mark.parametrize(
    "argv",
    [
        ["explore", "no-such-model"],
        ["explore", "missing/config.json"],
        ["explore", "BAD"],
        ["explore", "llama-2-7b", "--out", "FOLDER"],
        ["explore", "gemma-3-12b-it"],
        ["explore", "P-ROPE"],
    ],
)
def test_cli_bad_input_exits_2(tmp_path, capsys, argv):
    if argv[1] == "BAD":
        bad = tmp_path / "bad.json"
        bad.write_text("{not json")
        argv = ["explore", str(bad)]
    if argv[1] == "P-ROPE":  # a rope type the page does not compute
        p_rope = tmp_path / "p.json"
        p_rope.write_text(json.dumps(RopeConfig(head_dim=64, rope_type="proportional", rotated_pairs=8).to_hf()))
        argv = ["explore", str(p_rope)]
    argv = [str(tmp_path) if a == "FOLDER" else a for a in argv]
    out = [] if "--out" in argv else ["--out", str(tmp_path / "x.html")]
    assert main([*argv, *out]) == 2
    err = capsys.readouterr().err
    assert err.startswith("ropelab explore: error:") and err.count("\n") == 1
    assert not (tmp_path / "x.html").exists()
