/* ropelab explorer: the page script.
 *
 * Every formula below is the float64 twin of a Python function of ropelab, named in the comment
 * above it; tests/test_explorer.py reads window.ropelab.state() in headless Chromium and compares it
 * with the library. Nothing is fetched: the presets arrive as JSON written by
 * ropelab.explain.explorer.page_data (values from ropelab.presets).
 *
 * API (read-only): window.ropelab.set(settings) -> undefined; window.ropelab.state() -> a copy of
 * what is displayed; window.ropelab.settingsSpec() -> the accepted keys and ranges.
 */
"use strict";
(function () {
  const DATA = JSON.parse(document.getElementById("ropelab-data").textContent);
  const TWO_PI = 2 * Math.PI;
  const METHODS = ["none", "linear", "ntk", "dynamic", "yarn", "llama3", "longrope"];
  const byName = new Map(DATA.presets.map((p) => [p.name, p]));
  const longropeCards = DATA.presets.filter((p) => p.config.short_factor && p.config.long_factor).map((p) => p.name);

  // ---------------------------------------------------------------- frequencies (ropelab.frequencies)

  // ropelab.frequencies.default_inv_freq: theta_i = base ** (-2i / R), i = 0 .. R/2 - 1
  function defaultInvFreq(R, base) {
    const out = [];
    for (let j = 0; j < R; j += 2) out.push(Math.pow(base, -(j / R)));
    return out;
  }

  // ropelab.frequencies._ntk_base: base * scale ** (R / (R - 2))
  function ntkBase(base, scale, R) {
    return base * Math.pow(scale, R / (R - 2));
  }

  // ropelab.frequencies._default
  function freqDefault(cfg) {
    return [defaultInvFreq(cfg.rotary_dim, cfg.base), 1.0];
  }

  // ropelab.frequencies._linear (position interpolation)
  function freqLinear(cfg) {
    return [defaultInvFreq(cfg.rotary_dim, cfg.base).map((t) => t / cfg.factor), 1.0];
  }

  // ropelab.frequencies._ntk
  function freqNtk(cfg, seqLen) {
    if (cfg.rotary_dim === 2) return freqLinear(cfg, seqLen);
    return [defaultInvFreq(cfg.rotary_dim, ntkBase(cfg.base, cfg.factor, cfg.rotary_dim)), 1.0];
  }

  // ropelab.frequencies._dynamic: scale = factor * max(seq_len, max_pos) / max_pos - (factor - 1)
  function freqDynamic(cfg, seqLen) {
    const maxPositions = cfg.max_position_embeddings;
    const length = seqLen == null ? maxPositions : Math.max(seqLen, maxPositions);
    const scale = (cfg.factor * length) / maxPositions - (cfg.factor - 1);
    if (cfg.rotary_dim === 2) return [defaultInvFreq(2, cfg.base).map((t) => t / scale), 1.0];
    return [defaultInvFreq(cfg.rotary_dim, ntkBase(cfg.base, scale, cfg.rotary_dim)), 1.0];
  }

  // ropelab.frequencies.yarn_mscale: 0.1 * mscale * ln(scale) + 1, 1 for scale <= 1
  function yarnMscale(scale, mscale = 1.0) {
    return scale <= 1 ? 1.0 : 0.1 * mscale * Math.log(scale) + 1.0;
  }

  // ropelab.frequencies._yarn_correction_dim
  function yarnCorrectionDim(rotations, R, base, length) {
    return (R * Math.log(length / (rotations * 2 * Math.PI))) / (2 * Math.log(base));
  }

  // ropelab.frequencies.yarn_ramp: 1 keep the frequency, 0 divide it by the factor
  function yarnRamp(cfg) {
    const betaFast = cfg.beta_fast || 32.0;
    const betaSlow = cfg.beta_slow || 1.0;
    const original = cfg.original_max_position_embeddings;
    let low = yarnCorrectionDim(betaFast, cfg.rotary_dim, cfg.base, original);
    let high = yarnCorrectionDim(betaSlow, cfg.rotary_dim, cfg.base, original);
    if (cfg.truncate == null || cfg.truncate) [low, high] = [Math.floor(low), Math.ceil(high)];
    low = Math.max(low, 0);
    high = Math.min(high, cfg.rotary_dim - 1);
    if (low === high) high += 0.001;
    const out = [];
    for (let i = 0; i < cfg.rotary_dim / 2; i++) out.push(1.0 - Math.min(Math.max((i - low) / (high - low), 0), 1));
    return out;
  }

  // ropelab.frequencies._yarn_factor
  function yarnFactor(cfg) {
    return cfg.factor != null ? cfg.factor : cfg.max_position_embeddings / cfg.original_max_position_embeddings;
  }

  // ropelab.frequencies._yarn
  function freqYarn(cfg) {
    const factor = yarnFactor(cfg);
    let attention;
    if (cfg.attention_factor != null) attention = cfg.attention_factor;
    else if (cfg.mscale && cfg.mscale_all_dim) attention = yarnMscale(factor, cfg.mscale) / yarnMscale(factor, cfg.mscale_all_dim);
    else attention = yarnMscale(factor);
    const extrapolated = defaultInvFreq(cfg.rotary_dim, cfg.base);
    const keep = yarnRamp(cfg);
    return [extrapolated.map((e, i) => (e / factor) * (1.0 - keep[i]) + e * keep[i]), attention];
  }

  // ropelab.frequencies._longrope: long_factor once seq_len > original, short_factor otherwise
  function freqLongrope(cfg, seqLen) {
    const original = cfg.original_max_position_embeddings;
    const factor = cfg.factor != null ? cfg.factor : 1.0;
    let attention;
    if (cfg.attention_factor != null) attention = cfg.attention_factor;
    else if (factor <= 1.0) attention = 1.0;
    else attention = Math.sqrt(1 + Math.log(factor) / Math.log(original));
    const rescale = seqLen != null && seqLen > original ? cfg.long_factor : cfg.short_factor;
    return [defaultInvFreq(cfg.rotary_dim, cfg.base).map((t, i) => t / rescale[i]), attention];
  }

  // ropelab.frequencies._llama3: keep short wavelengths, divide long ones, blend the band between
  function freqLlama3(cfg) {
    const original = cfg.original_max_position_embeddings;
    const low = cfg.low_freq_factor, high = cfg.high_freq_factor;
    const out = defaultInvFreq(cfg.rotary_dim, cfg.base).map((t) => {
      const wavelength = (2 * Math.PI) / t;
      const smooth = (original / wavelength - low) / (high - low);
      const blended = ((1 - smooth) * t) / cfg.factor + smooth * t;
      const scaled = wavelength > original / low ? t / cfg.factor : t;
      const medium = wavelength >= original / high && wavelength <= original / low;
      return medium ? blended : scaled;
    });
    return [out, 1.0];
  }

  // ropelab.frequencies.FREQUENCY_FUNCTIONS
  const FREQUENCY_FUNCTIONS = {
    default: freqDefault, linear: freqLinear, ntk: freqNtk, dynamic: freqDynamic,
    yarn: freqYarn, longrope: freqLongrope, llama3: freqLlama3,
  };

  // ropelab.frequencies.rope_frequencies -> [inv_freq, attention_factor]
  function ropeFrequencies(cfg, seqLen) {
    return FREQUENCY_FUNCTIONS[cfg.rope_type](cfg, seqLen);
  }

  // ---------------------------------------------------------------- analysis (ropelab.analysis)

  // ropelab.analysis.wavelengths.pair_wavelengths: 2 pi / theta_i
  function pairWavelengths(invFreq) {
    return invFreq.map((t) => TWO_PI / t);
  }

  // ropelab.analysis.wavelengths.critical_dimension (Liu et al. 2023)
  function criticalDimension(R, base, trainedLength) {
    const value = 2 * Math.ceil((R / 2) * Math.log(trainedLength / TWO_PI) / Math.log(base));
    return Math.min(Math.max(value, 0), R);
  }

  // ropelab.analysis.wavelengths.out_of_range_pairs(...).indices
  function outOfRangePairs(trainedFreq, trainedLength, targetFreq, targetLength) {
    const out = [];
    trainedFreq.forEach((t, i) => {
      const trainedReach = trainedLength * t;
      const targetReach = (targetLength - 1) * targetFreq[i];
      const fullTurn = trainedReach >= TWO_PI;
      if (!fullTurn && targetReach >= trainedReach - 1e-12 * trainedReach) out.push(i);
    });
    return out;
  }

  // ropelab.analysis.scaling.llama3_ramp: the blend weight, clamped to [0, 1]
  function llama3Ramp(cfg) {
    return defaultInvFreq(cfg.rotary_dim, cfg.base).map((t) => {
      const smooth = (cfg.original_max_position_embeddings / (TWO_PI / t) - cfg.low_freq_factor) /
        (cfg.high_freq_factor - cfg.low_freq_factor);
      return Math.min(Math.max(smooth, 0), 1);
    });
  }

  // torch.round: half to even
  function roundHalfEven(x) {
    const r = Math.round(x);
    return Math.abs(x % 1) === 0.5 && r % 2 !== 0 ? r - 1 : r;
  }

  // ropelab.analysis.decay.distance_grid(max_distance, points)
  function distanceGrid(maxDistance, points) {
    if (maxDistance + 1 <= points) return Array.from({ length: maxDistance + 1 }, (_, i) => i);
    const steps = points - 1;
    const end = Math.fround(Math.log10(maxDistance)); // torch.log10 of a float32 tensor
    const step = end / (steps - 1);
    const grid = new Set([0]);
    for (let i = 0; i < steps; i++) {
      const exponent = i < steps / 2 ? i * step : end - (steps - 1 - i) * step; // torch.linspace
      grid.add(roundHalfEven(Math.pow(10, exponent)));
    }
    return Array.from(grid).sort((a, b) => a - b);
  }

  // ropelab.analysis.decay.expected_score(kind="ones").expected: af**2 * 2 * sum_i cos(d theta_i) + (D - R)
  function expectedScore(invFreq, attention, headDim, R, distances) {
    const gain = attention * attention;
    return distances.map((d) => {
      let sum = 0;
      for (const t of invFreq) sum += Math.cos(d * t);
      return gain * 2.0 * sum + (headDim - R);
    });
  }

  // ropelab.analysis.decay.roformer_decay_bound: mean_j |sum_{k<j} exp(i d theta_k)|
  function roformerDecayBound(invFreq, distances) {
    return distances.map((d) => {
      let re = 0, im = 0, total = 0;
      for (const t of invFreq) {
        re += Math.cos(d * t);
        im += Math.sin(d * t);
        total += Math.hypot(re, im);
      }
      return total / invFreq.length;
    });
  }

  // ropelab.encodings.sinusoidal.sinusoidal_table: PE[p, 2i] = sin(p w_i), PE[p, 2i+1] = cos(p w_i)
  function sinusoidalEncoding(position, dim, base) {
    const out = [];
    for (let j = 0; j < dim; j += 2) {
      const angle = position * Math.pow(base, -(j / dim));
      out.push(Math.sin(angle), Math.cos(angle));
    }
    return out;
  }

  // ropelab.demo._wrapped: remainder(angle + pi, 2 pi) - pi
  function wrapped(angle) {
    const r = (angle + Math.PI) % TWO_PI;
    return (r < 0 ? r + TWO_PI : r) - Math.PI;
  }

  // ropelab.config.RopeConfig docstring: pair i is channels (i, i + R/2) ("half") or (2i, 2i + 1)
  function channelPairs(headDim, R, layout) {
    return Array.from({ length: headDim }, (_, c) => {
      if (c >= R) return -1;
      return layout === "half" ? (c < R / 2 ? c : c - R / 2) : Math.floor(c / 2);
    });
  }

  // ---------------------------------------------------------------- settings, clamping and configs

  // Ranges of the controls (a UI choice, not a fact about any model).
  const SPEC = {
    preset: { kind: "choice", values: DATA.presets.map((p) => p.name) },
    head_dim: { kind: "int", min: 2, max: 1024 },
    rotary_fraction: { kind: "number", min: 0.001, max: 1 },
    base: { kind: "number", min: 2, max: 1e12 },
    layout: { kind: "choice", values: ["half", "interleaved"] },
    T: { kind: "int", min: 1, max: 2 ** 24 },
    N: { kind: "int", min: 1, max: 2 ** 26 },
    method: { kind: "choice", values: METHODS },
    factor: { kind: "number", min: 1, max: 1e4, nullable: true },
    beta_fast: { kind: "number", min: 1e-3, max: 1e4 },
    beta_slow: { kind: "number", min: 1e-3, max: 1e4 },
    mscale: { kind: "number", min: 0, max: 100 },
    mscale_all_dim: { kind: "number", min: 0, max: 100 },
    truncate: { kind: "bool" },
    attention_factor: { kind: "number", min: 1e-3, max: 100, nullable: true },
    low_freq_factor: { kind: "number", min: 1e-3, max: 1e4 },
    high_freq_factor: { kind: "number", min: 1e-3, max: 1e4 },
    longrope_from: { kind: "choice", values: longropeCards },
    m: { kind: "int", min: 0, max: 2 ** 26 },
    n: { kind: "int", min: 0, max: 2 ** 26 },
    offset: { kind: "int", min: 0, max: 2 ** 31 - 1 },
    pair: { kind: "int", min: 0, max: 511 },
  };
  const ORDER = Object.keys(SPEC); // preset first: a card sets the rest, later keys override it

  let S = null; // current settings
  let messages = [];

  // Settings of a card: its head, its trained context T, its target N and its own method. A multi-axis
  // card is drawn through its one-axis view (ropelab.explain.explorer.one_axis_view; its note says which pairs).
  function cardSettings(name, previous) {
    const entry = byName.get(name);
    const c = entry.view || entry.config;
    let T = c.original_max_position_embeddings || c.max_position_embeddings;
    if (!T) {
      T = previous ? previous.T : 4096; // a UI starting point, not a fact about the model
      messages.push(`${name} gives no trained length (max_position_embeddings): T set to ${T}, change it to the model's`);
    }
    const N = c.rope_type === "default" || c.rope_type === "dynamic" ? 2 * T : Math.max(c.max_position_embeddings || T, T);
    const llama3 = DATA.llama3_defaults;
    return {
      preset: name, head_dim: c.head_dim, rotary_fraction: c.rotary_dim / c.head_dim, base: c.base,
      layout: c.layout, T, N, method: c.rope_type === "default" ? "none" : c.rope_type,
      factor: c.factor, beta_fast: c.beta_fast || 32.0, beta_slow: c.beta_slow || 1.0,
      mscale: c.mscale || 0, mscale_all_dim: c.mscale_all_dim || 0,
      truncate: c.truncate == null ? true : c.truncate, attention_factor: c.attention_factor,
      low_freq_factor: c.low_freq_factor || llama3.low_freq_factor,
      high_freq_factor: c.high_freq_factor || llama3.high_freq_factor,
      longrope_from: c.short_factor ? name : longropeCards[0] || null,
      m: previous ? previous.m : 12, n: previous ? previous.n : 5, offset: previous ? previous.offset : 0, pair: 0,
    };
  }

  // rotary_dim = the largest even number <= head_dim * fraction (at least 2)
  function rotaryDim(s) {
    return Math.max(2, 2 * Math.floor((s.head_dim * s.rotary_fraction) / 2 + 1e-9));
  }

  function effectiveFactor(s) {
    return s.factor != null ? s.factor : Math.max(1, s.N / s.T);
  }

  // The RopeConfig fields of the trained variant and of the variant at N (ropelab.extension.extension_config,
  // plus longrope and the per-method parameters).
  function configs(s) {
    const R = rotaryDim(s);
    const head = { head_dim: s.head_dim, rotary_dim: R, base: s.base, layout: s.layout };
    const trained = { ...head, rope_type: "default", max_position_embeddings: s.T };
    const factor = effectiveFactor(s);
    const scaled = { ...head, factor, max_position_embeddings: s.N };
    let target;
    switch (s.method) {
      case "none": target = trained; break;
      case "linear": case "ntk": target = { ...scaled, rope_type: s.method }; break;
      case "dynamic": target = { ...head, rope_type: "dynamic", factor, max_position_embeddings: s.T }; break;
      case "yarn": target = { ...scaled, rope_type: "yarn", original_max_position_embeddings: s.T,
        beta_fast: s.beta_fast, beta_slow: s.beta_slow, mscale: s.mscale || null,
        mscale_all_dim: s.mscale_all_dim || null, truncate: s.truncate, attention_factor: s.attention_factor }; break;
      case "llama3": target = { ...scaled, rope_type: "llama3", original_max_position_embeddings: s.T,
        low_freq_factor: s.low_freq_factor, high_freq_factor: s.high_freq_factor }; break;
      case "longrope": {
        const c = byName.get(s.longrope_from).config;
        target = { ...scaled, rope_type: "longrope", original_max_position_embeddings: s.T,
          short_factor: c.short_factor, long_factor: c.long_factor, attention_factor: s.attention_factor };
        break;
      }
    }
    return { trained, target };
  }

  // What RopeConfig would refuse for the combination (null if fine).
  function combinationError(s) {
    const R = rotaryDim(s);
    if (s.method === "llama3" && !(s.high_freq_factor > s.low_freq_factor))
      return `high_freq_factor=${s.high_freq_factor} must be > low_freq_factor=${s.low_freq_factor}`;
    if (s.method === "longrope") {
      if (!s.longrope_from) return "longrope needs a card with short/long factors";
      const c = byName.get(s.longrope_from).config;
      if (c.long_factor.length !== R / 2)
        return `longrope factors of ${s.longrope_from} have ${c.long_factor.length} entries, not rotary_dim/2 = ${R / 2}`;
    }
    return null;
  }

  // One key: parse, then refuse (keep the old value) or clamp, with a message either way.
  function accept(next, key, raw) {
    const spec = SPEC[key];
    if (!spec) return messages.push(`unknown setting ${key}: refused (accepted: ${ORDER.join(", ")})`);
    if (spec.kind === "choice") {
      if (!spec.values.includes(raw)) return messages.push(`${key}=${JSON.stringify(raw)} refused: expected one of ${spec.values.join(", ")}`);
      next[key] = raw;
      return;
    }
    if (spec.kind === "bool") {
      if (typeof raw !== "boolean") return messages.push(`${key}=${JSON.stringify(raw)} refused: expected true or false`);
      next[key] = raw;
      return;
    }
    if ((raw === null || raw === "") && spec.nullable) { next[key] = null; return; }
    const value = typeof raw === "string" ? Number(raw) : raw;
    if (typeof value !== "number" || !Number.isFinite(value))
      return messages.push(`${key}=${JSON.stringify(raw)} refused: expected a number in [${spec.min}, ${spec.max}]`);
    let v = spec.kind === "int" ? Math.round(value) : value;
    const max = key === "pair" ? rotaryDim(next) / 2 - 1 : spec.max;
    if (v < spec.min || v > max) {
      const clamped = Math.min(Math.max(v, spec.min), max);
      messages.push(`${key}=${value} is out of range [${spec.min}, ${max}]: clamped to ${clamped}`);
      v = clamped;
    }
    next[key] = v;
  }

  function set(settings) {
    messages = [];
    if (settings === null || typeof settings !== "object") {
      messages.push("set() expects an object of settings");
      render();
      return;
    }
    let next = { ...S };
    if ("preset" in settings && SPEC.preset.values.includes(settings.preset)) next = cardSettings(settings.preset, S);
    else if ("preset" in settings) accept(next, "preset", settings.preset); // refused, with its message
    for (const key of Object.keys(settings)) if (!(key in SPEC)) accept(next, key, settings[key]);
    for (const key of ORDER) if (key !== "preset" && key in settings) accept(next, key, settings[key]);
    next.pair = Math.min(next.pair, rotaryDim(next) / 2 - 1);
    const error = combinationError(next);
    if (error) messages.push(`refused: ${error}; settings unchanged`);
    else S = next;
    render();
  }

  // ---------------------------------------------------------------- compute everything shown

  const DECAY_POINTS = 512, SINUS_POINTS = 256;
  let STATE = null;

  function compute(s) {
    const R = rotaryDim(s);
    const { trained, target } = configs(s);
    const [invTrained] = ropeFrequencies(trained, s.T);
    const [inv, attention] = ropeFrequencies(target, s.N);
    const base = defaultInvFreq(R, s.base);
    const ramp = target.rope_type === "yarn" ? yarnRamp(target) : target.rope_type === "llama3" ? llama3Ramp(target) : null;
    const distances = distanceGrid(s.N, DECAY_POINTS);

    // 1. the clock: q = k = (1, 0) in pair `pair`, at positions m + offset and n + offset
    const theta = inv[s.pair];
    const dotAt = (o) => {
      const a = (s.m + o) * theta, b = (s.n + o) * theta;
      return attention * attention * (Math.cos(a) * Math.cos(b) + Math.sin(a) * Math.sin(b));
    };

    // 5. sinusoidal slow channels over 0..N, and the score at fixed m - n as both positions shift
    const sinusPositions = Array.from({ length: SINUS_POINTS }, (_, k) => Math.round((k * s.N) / (SINUS_POINTS - 1)));
    const slow = [R / 2 - 1, R / 2 - 2, R / 2 - 3].filter((i) => i >= 0);
    const sinusChannels = slow.map((i) => ({ pair: i, values: sinusPositions.map((p) => sinusoidalEncoding(p, R, s.base)[2 * i]) }));
    const sinusScore = sinusPositions.map((o) => {
      const a = sinusoidalEncoding(o + s.m, R, s.base), b = sinusoidalEncoding(o + s.n, R, s.base);
      return a.reduce((acc, x, c) => acc + (1 + x) * (1 + b[c]), 0);
    });
    const ropeScore = sinusPositions.map((o) => {
      let sum = 0; // all-ones q and k, every pair rotated by its exact angle (ropelab.rotary.rope_angles)
      for (const t of inv) {
        const a = (o + s.m) * t, b = (o + s.n) * t;
        const [qa, qb] = [Math.cos(a) - Math.sin(a), Math.sin(a) + Math.cos(a)];
        const [ka, kb] = [Math.cos(b) - Math.sin(b), Math.sin(b) + Math.cos(b)];
        sum += qa * ka + qb * kb;
      }
      return attention * attention * sum + (s.head_dim - R);
    });

    // 6. precision at position m + offset (ropelab.demo.precision_rows)
    const position = s.m + s.offset;
    const f32Angle = inv.map((t) => Math.fround(Math.fround(position) * Math.fround(t)));
    const exact = inv.map((t) => position * t);

    return {
      settings: { ...s }, rotary_dim: R, factor: target.factor == null ? null : target.factor,
      config: target, trained_config: trained,
      inv_freq: inv, attention_factor: attention, inv_freq_trained: invTrained, 
      wavelengths: pairWavelengths(inv), wavelengths_trained: pairWavelengths(invTrained),
      out_of_range: outOfRangePairs(invTrained, s.T, inv, s.N),
      out_of_range_none: outOfRangePairs(invTrained, s.T, invTrained, s.N),
      critical_dim: criticalDimension(R, s.base, s.T),
      scale: base.map((b, i) => b / inv[i]), ramp,
      distances, decay: expectedScore(inv, attention, s.head_dim, R, distances),
      decay_trained: expectedScore(invTrained, 1.0, s.head_dim, R, distances),
      bound: roformerDecayBound(inv, distances),
      theta: theta, dot: dotAt(s.offset), dot_without_offset: dotAt(0),
      clock_angle: wrapped((s.m - s.n) * theta),
      sinus_positions: sinusPositions, sinus_channels: sinusChannels, sinus_score: sinusScore, rope_score: ropeScore,
      precision_position: position,
      f32_angle_error: f32Angle.map((a, i) => Math.abs(wrapped(a - exact[i]))),
      f32_cos_error: f32Angle.map((a, i) => Math.abs(Math.cos(a) - Math.cos(exact[i]))),
      ropelab_cos_error: exact.map((a) => Math.abs(Math.fround(Math.cos(a)) - Math.cos(a))),
      channel_pair: channelPairs(s.head_dim, R, s.layout),
      messages: [...messages],
    };
  }

  // ---------------------------------------------------------------- drawing

  const fmt = (x, digits = 4) => (x == null ? "-" : Math.abs(x) >= 1e5 || (Math.abs(x) < 1e-3 && x !== 0) ? x.toExponential(digits - 1) : +x.toPrecision(digits) + "");
  const charts = {};
  const marks = {}; // vertical markers per chart: [{x, color, label}]

  function drawMarks(u) {
    const ctx = u.ctx;
    for (const mark of marks[u.root.dataset.key] || []) {
      if (mark.x == null || !Number.isFinite(mark.x)) continue;
      const x = u.valToPos(mark.x, "x", true);
      if (x < u.bbox.left || x > u.bbox.left + u.bbox.width) continue;
      ctx.save();
      ctx.strokeStyle = mark.color;
      ctx.setLineDash([5, 4]);
      ctx.lineWidth = 1.5 * devicePixelRatio;
      ctx.beginPath(); ctx.moveTo(x, u.bbox.top); ctx.lineTo(x, u.bbox.top + u.bbox.height); ctx.stroke();
      ctx.fillStyle = mark.color;
      ctx.font = `${11 * devicePixelRatio}px sans-serif`;
      ctx.fillText(mark.label, x + 3, u.bbox.top + 12 * devicePixelRatio);
      ctx.restore();
    }
  }

  function chart(key, el, xLabel, yLabel, series, opts = {}) {
    const width = Math.max(420, document.getElementById(el).clientWidth - 4);
    const u = new uPlot({
      width, height: 230, scales: { x: { time: false, distr: opts.xlog ? 3 : 1 }, y: { distr: opts.ylog ? 3 : 1 }, ...(opts.scales || {}) },
      series: [{ label: xLabel }, ...series],
      axes: [{ label: xLabel }, { label: yLabel, size: 60, ...(opts.ylog ? { values: (u, vals) => vals.map((v) => fmt(v, 2)) } : {}) }, ...(opts.axes || [])],
      hooks: { draw: [drawMarks] },
    }, [[0], ...series.map(() => [null])], document.getElementById(el));
    u.root.dataset.key = key;
    charts[key] = u;
  }

  const line = (label, stroke, extra = {}) => ({ label, stroke, width: 1.5, ...extra });
  const dots = (label, stroke) => ({ label, stroke, fill: stroke, paths: () => null, points: { show: true, size: 7, fill: stroke } });
  const positive = (xs) => xs.map((x) => (x > 0 && Number.isFinite(x) ? x : null));

  function makeCharts() {
    chart("wavelength", "chart-wavelength", "pair i", "wavelength (positions)", [
      line("trained", "#bbb", { width: 5 }), line("with method", "#1f5fbf"), dots("out of range past T", "#d62728"),
      line("T", "#2a9d3a", { dash: [6, 4] }), line("N", "#c77c00", { dash: [6, 4] })], { ylog: true });
    chart("scale", "chart-scale", "pair i", "theta_default / theta", [
      line("scale factor", "#1f5fbf"), line("ramp (yarn / llama3)", "#c77c00", { scale: "ramp" })],
      { scales: { ramp: { range: [0, 1.05] } }, axes: [{ scale: "ramp", side: 1, label: "ramp", grid: { show: false } }] });
    chart("decay", "chart-decay", "distance m - n", "expected score (ones)", [
      line("trained (default)", "#bbb", { width: 4 }), line("with method", "#1f5fbf"), line("RoFormer bound (with method)", "#9467bd", { scale: "bound" })],
      { xlog: true, scales: { bound: {} }, axes: [{ scale: "bound", side: 1, label: "bound", grid: { show: false } }] });
    chart("sinus", "chart-sinus", "position", "sinusoidal channel", [
      line("slowest", "#d62728"), line("2nd slowest", "#c77c00"), line("3rd slowest", "#2a9d3a")]);
    chart("sinusScore", "chart-sinus-score", "offset (both positions)", "score at fixed m - n", [
      line("sinusoidal (x + PE)", "#d62728"), line("RoPE", "#1f5fbf", { width: 2.5 })]);
    chart("precision", "chart-precision", "pair i", "error (radians / cos)", [
      line("float32 angle error", "#d62728"), line("float32 cos error", "#c77c00"), line("ropelab cos error", "#1f5fbf")], { ylog: true });
  }

  function svg(tag, attrs, parent) {
    const el = document.createElementNS("http://www.w3.org/2000/svg", tag);
    for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
    parent.appendChild(el);
    return el;
  }

  function drawClock(st) {
    const s = st.settings, el = document.getElementById("clock");
    el.replaceChildren();
    svg("circle", { cx: 0, cy: 0, r: 100, fill: "none", stroke: "#ccd", "stroke-width": 1.5 }, el);
    const a = (s.m + s.offset) * st.theta, b = (s.n + s.offset) * st.theta;
    const ptA = [100 * Math.cos(a), -100 * Math.sin(a)], ptB = [100 * Math.cos(b), -100 * Math.sin(b)];
    const big = Math.abs(st.clock_angle) > Math.PI ? 1 : 0, sweep = st.clock_angle > 0 ? 0 : 1;
    const arc = [40 * Math.cos(b), -40 * Math.sin(b), 40 * Math.cos(b + st.clock_angle), -40 * Math.sin(b + st.clock_angle)];
    svg("path", { d: `M ${arc[0]} ${arc[1]} A 40 40 0 ${big} ${sweep} ${arc[2]} ${arc[3]}`, fill: "none", stroke: "#888", "stroke-width": 2 }, el);
    svg("line", { x1: 0, y1: 0, x2: ptB[0], y2: ptB[1], stroke: "#c77c00", "stroke-width": 4 }, el);
    svg("line", { x1: 0, y1: 0, x2: ptA[0], y2: ptA[1], stroke: "#1f5fbf", "stroke-width": 4 }, el);
    svg("text", { x: ptA[0] * 1.1 - 4, y: ptA[1] * 1.1 + 4, fill: "#1f5fbf", "font-size": 12 }, el).textContent = "q";
    svg("text", { x: ptB[0] * 1.1 - 4, y: ptB[1] * 1.1 + 4, fill: "#c77c00", "font-size": 12 }, el).textContent = "k";
    document.getElementById("clock-text").textContent =
      `pair ${s.pair}: theta = ${fmt(st.theta, 6)} rad/position, wavelength ${fmt(TWO_PI / st.theta)}\n` +
      `q at m + offset = ${s.m + s.offset}, k at n + offset = ${s.n + s.offset}\n` +
      `angle between (m - n) theta = ${fmt((st.clock_angle * 180) / Math.PI)} deg\n` +
      `dot q.k = ${st.dot.toPrecision(12)}  (offset 0: ${st.dot_without_offset.toPrecision(12)})`;
  }

  function render() {
    const st = compute(S);
    STATE = st;
    const s = st.settings, R = st.rotary_dim, idx = st.inv_freq.map((_, i) => i);
    const msg = document.getElementById("message");
    msg.textContent = st.messages.join(" | ");
    syncControls();

    const card = byName.get(s.preset);
    document.getElementById("card").textContent =
      `${card.name}${card.model_id ? " (" + card.model_id + ")" : ""}: head_dim ${s.head_dim}, rotary_dim ${R}, base ${s.base}, ${s.layout} layout; ` +
      `trained T = ${s.T}, target N = ${s.N}; method ${s.method}${s.method === "none" ? "" : ", factor " + fmt(effectiveFactor(s), 6)}, ` +
      `attention factor ${st.attention_factor.toPrecision(8)}\nsource: ${card.source}` + (card.notes.length ? "\nnotes: " + card.notes.join("; ") : "");

    marks.wavelength = [{ x: st.critical_dim / 2 - 0.5, color: "#9467bd", label: `critical dim ${st.critical_dim}` }];
    charts.wavelength.setData([idx, st.wavelengths_trained, st.wavelengths,
      idx.map((i) => (st.out_of_range.includes(i) ? st.wavelengths[i] : null)), idx.map(() => s.T), idx.map(() => s.N)]);
    document.getElementById("wavelength-text").textContent =
      `critical dimension ${st.critical_dim} of ${R} (Liu et al. 2023): pairs ${st.critical_dim / 2}..${R / 2 - 1} never make a full turn in T\n` +
      `out of range at N, no method: ${st.out_of_range_none.length} pairs; with ${s.method}: ${st.out_of_range.length} pairs` +
      (st.out_of_range.length ? ` (${st.out_of_range[0]}..${st.out_of_range[st.out_of_range.length - 1]})` : "");

    charts.scale.setData([idx, st.scale, st.ramp || idx.map(() => null)]);
    document.getElementById("scale-text").textContent =
      `scale of the fastest pair ${fmt(st.scale[0], 6)}, slowest ${fmt(st.scale[R / 2 - 1], 6)}; attention factor ${st.attention_factor.toPrecision(8)}`;

    const d = st.distances.slice(1);
    marks.decay = [{ x: s.T, color: "#2a9d3a", label: "T" }, { x: s.N, color: "#c77c00", label: "N" }];
    charts.decay.setData([d, st.decay_trained.slice(1), st.decay.slice(1), st.bound.slice(1)]);
    document.getElementById("decay-text").textContent =
      `score at distance 0: ${fmt(st.decay[0], 6)}; at N: trained ${fmt(st.decay_trained[st.decay_trained.length - 1], 6)}, with method ${fmt(st.decay[st.decay.length - 1], 6)}`;

    marks.sinus = [{ x: s.T, color: "#2a9d3a", label: "T" }];
    charts.sinus.setData([st.sinus_positions, ...[0, 1, 2].map((j) => (st.sinus_channels[j] ? st.sinus_channels[j].values : st.sinus_positions.map(() => null)))]);
    charts.sinusScore.setData([st.sinus_positions, st.sinus_score, st.rope_score]);
    const spread = (xs) => Math.max(...xs) - Math.min(...xs);
    document.getElementById("sinus-text").textContent =
      `top: sin channels of the slowest pairs of a sinusoidal encoding (width ${R}, base ${s.base}) over 0..N; past T they reach values never seen in training.\n` +
      `bottom: q = k = ones, positions (offset + m, offset + n): spread over offsets sinusoidal ${fmt(spread(st.sinus_score))}, RoPE ${fmt(spread(st.rope_score))}`;

    charts.precision.setData([idx, positive(st.f32_angle_error), positive(st.f32_cos_error), positive(st.ropelab_cos_error)]);
    document.getElementById("precision-text").textContent =
      `position ${st.precision_position}: float32 angles (position.float() * inv_freq.float(), as transformers) max error ${fmt(Math.max(...st.f32_angle_error))} rad; ` +
      `ropelab forms the angle in float64 and rounds only cos: max cos error ${fmt(Math.max(...st.ropelab_cos_error))}`;

    const map = document.getElementById("layout-map");
    map.replaceChildren(...st.channel_pair.map((p, c) => {
      const cell = document.createElement("span");
      if (p < 0) { cell.className = "pass"; cell.textContent = "-"; cell.title = `channel ${c}: not rotated`; }
      else { cell.style.background = `hsl(${(p * 137.5) % 360} 60% 42%)`; cell.textContent = p; cell.title = `channel ${c}: pair ${p}`; }
      return cell;
    }));
    document.getElementById("layout-text").textContent =
      `${s.layout === "half" ? "half-split (GPT-NeoX / HF Llama): pair i = channels (i, i + R/2)" : "interleaved (GPT-J / Meta Llama): pair i = channels (2i, 2i + 1)"}; ` +
      `${s.head_dim - R} of ${s.head_dim} channels (grey) never turn`;
    drawClock(st);
  }

  // Drag q or k round the clock: m (or n) moves by the whole positions nearest the dragged angle.
  function enableClockDrag() {
    const el = document.getElementById("clock");
    let dragging = null;
    const pointerAngle = (event) => {
      const box = el.getBoundingClientRect();
      return Math.atan2(-(event.clientY - box.top - box.height / 2), event.clientX - box.left - box.width / 2);
    };
    el.addEventListener("pointerdown", (event) => {
      const a = pointerAngle(event), st = STATE, s = st.settings;
      const toQ = Math.abs(wrapped(a - (s.m + s.offset) * st.theta)), toK = Math.abs(wrapped(a - (s.n + s.offset) * st.theta));
      dragging = toQ <= toK ? "m" : "n";
      el.setPointerCapture(event.pointerId);
    });
    el.addEventListener("pointermove", (event) => {
      if (!dragging) return;
      const s = STATE.settings, current = (s[dragging] + s.offset) * STATE.theta;
      const steps = Math.round(wrapped(pointerAngle(event) - current) / STATE.theta);
      if (steps !== 0) set({ [dragging]: Math.max(0, s[dragging] + steps) });
    });
    const stop = () => { dragging = null; };
    el.addEventListener("pointerup", stop);
    el.addEventListener("pointercancel", stop);
  }

  // ---------------------------------------------------------------- controls

  const CONTROLS = [
    ["card", [["preset", "card"]]],
    ["head", [["head_dim", "head_dim"], ["rotary_fraction", "rotary fraction", 0.001], ["base", "base"], ["layout", "layout"]]],
    ["context", [["T", "trained T"], ["N", "target N"]]],
    ["extension", [["method", "method"], ["factor", "factor (empty: N/T)", "any"], ["beta_fast", "beta_fast", "any", "yarn"],
      ["beta_slow", "beta_slow", "any", "yarn"], ["mscale", "mscale", "any", "yarn"], ["mscale_all_dim", "mscale_all_dim", "any", "yarn"],
      ["truncate", "truncate", null, "yarn"], ["attention_factor", "attention factor", "any", "yarn longrope"],
      ["low_freq_factor", "low_freq_factor", "any", "llama3"], ["high_freq_factor", "high_freq_factor", "any", "llama3"],
      ["longrope_from", "factors of", null, "longrope"]]],
    ["positions", [["m", "m", 1, null, true], ["n", "n", 1, null, true], ["offset", "offset", 1, null, true], ["pair", "pair (clock)", 1, null, true]]],
  ];

  function buildControls() {
    const root = document.getElementById("controls");
    for (const [legend, items] of CONTROLS) {
      const fs = document.createElement("fieldset");
      fs.innerHTML = `<legend>${legend}</legend>`;
      for (const [key, text, step, onlyFor, slider] of items) {
        const spec = SPEC[key], label = document.createElement("label");
        label.dataset.only = onlyFor || "";
        label.append(text);
        let input;
        if (spec.kind === "choice") {
          input = document.createElement("select");
          for (const v of spec.values) input.add(new Option(v, v));
        } else {
          input = document.createElement("input");
          input.type = spec.kind === "bool" ? "checkbox" : "number";
          if (step) input.step = step;
        }
        input.id = `ctl-${key}`;
        input.addEventListener("change", () => set({ [key]: readControl(key, input) }));
        label.append(input);
        if (slider) {
          const range = document.createElement("input");
          range.type = "range"; range.id = `slider-${key}`; range.min = 0; range.step = 1;
          range.addEventListener("input", () => set({ [key]: Number(range.value) }));
          label.append(range);
        }
        fs.append(label);
      }
      root.append(fs);
    }
  }

  function readControl(key, input) {
    if (SPEC[key].kind === "bool") return input.checked;
    if (SPEC[key].kind === "choice") return input.value;
    return input.value === "" && SPEC[key].nullable ? null : input.value === "" ? NaN : Number(input.value);
  }

  function syncControls() {
    for (const key of ORDER) {
      const input = document.getElementById(`ctl-${key}`);
      if (!input) continue;
      if (SPEC[key].kind === "bool") input.checked = S[key];
      else input.value = S[key] == null ? "" : S[key];
      const range = document.getElementById(`slider-${key}`);
      if (range) {
        range.max = key === "pair" ? rotaryDim(S) / 2 - 1 : key === "offset" ? Math.max(S.N, S.offset) * 16 : Math.max(S.N, S[key]);
        range.value = S[key];
      }
    }
    for (const label of document.querySelectorAll("#controls label[data-only]")) {
      const only = label.dataset.only;
      label.classList.toggle("hidden", only !== "" && !only.split(" ").includes(S.method));
    }
  }

  // ---------------------------------------------------------------- start

  S = cardSettings(DATA.initial, null);
  buildControls();
  makeCharts();
  enableClockDrag();
  render();
  const clone = (x) => structuredClone(x);
  window.ropelab = Object.freeze({
    set: (settings) => { set(settings); },
    state: () => clone(STATE),
    settingsSpec: () => clone(SPEC),
    presets: () => DATA.presets.map((p) => p.name),
    firstRenderMs: performance.now(),
  });
})();
