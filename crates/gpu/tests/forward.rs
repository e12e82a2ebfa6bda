//! The whole forward pass on the device against an independent f64 reference of the same
//! transformer (llama-, qwen- and gemma3-shaped tiny models with random weights in several
//! formats): embedding scale, RMS norms, q/k biases and norms, both RoPE layouts with partial
//! rotation, grouped-query attention over a paged cache with sliding windows, SiLU and GELU
//! MLPs, Gemma's post-norms, tied and separate LM heads; ragged batches, prefill, decode, a
//! fork whose shared block is copied on the device, and a long decode past the window.
//!
//! Bound: the reference keeps keys and values rounded to f16 like the cache, so the only
//! differences are f32 rounding (relative ~1e-6 per operation) and f16 roundings of keys/values
//! that land on the other side of a rounding boundary (2⁻¹¹ relative on a few elements). Over
//! two layers that stays far below 0.05% of a logits row's range on the f32 kernels. The int8
//! tier rounds every matmul input to 8 bits (up to 1/254 of a block's largest value per element,
//! as the CPU kernels do), so there the bound is 3% of the range, the same order the engine
//! allows between its CPU kernels and an f32 reference.

mod common;

use common::{dequantize, device, random_weights, Rng};
use half::f16;
use thinkscope_gpu::{
    Activation, ForwardBatch, ForwardItem, GpuContext, GpuKv, GpuModel, GpuModelBuilder,
    GpuModelSpec, LayerSlot, RopeStyle, Slot, Source, Tier, WeightFormat,
};

#[derive(Clone, Copy, PartialEq)]
enum Family {
    Llama,
    Qwen,
    Gemma,
}

struct RefLayer {
    mats: Vec<(LayerSlot, Vec<f32>)>,
    vecs: Vec<(LayerSlot, Vec<f32>)>,
}

struct Reference {
    spec: GpuModelSpec,
    embed: Vec<f32>,
    output: Option<Vec<f32>>,
    out_norm: Vec<f32>,
    layers: Vec<RefLayer>,
}

impl RefLayer {
    fn m(&self, s: LayerSlot) -> &[f32] {
        &self.mats.iter().find(|(k, _)| *k == s).expect("matrix").1
    }

    fn v(&self, s: LayerSlot) -> Option<&[f32]> {
        self.vecs
            .iter()
            .find(|(k, _)| *k == s)
            .map(|(_, v)| v.as_slice())
    }
}

fn spec(f: Family) -> GpuModelSpec {
    let (hidden, n_head, n_kv, hd, ffn, pairs) = match f {
        Family::Llama => (64, 4, 2, 16, 96, 8),
        Family::Qwen => (96, 6, 2, 16, 128, 8),
        Family::Gemma => (256, 4, 1, 32, 512, 12),
    };
    let n_layer = 2;
    let base = |l: usize| -> f64 {
        if f == Family::Gemma && l == 0 {
            10_000.0
        } else {
            1_000_000.0
        }
    };
    GpuModelSpec {
        hidden,
        n_layer,
        n_head,
        n_kv_head: n_kv,
        head_dim: hd,
        ffn,
        vocab: 300,
        context_length: 128,
        rms_eps: 1e-5,
        rope_style: if f == Family::Llama {
            RopeStyle::Interleaved
        } else {
            RopeStyle::Neox
        },
        // The llama-shaped model's second layer has no RoPE (SmolLM3's NoPE layers).
        inv_freq: (0..n_layer)
            .map(|l| {
                let pairs = if f == Family::Llama && l == 1 {
                    0
                } else {
                    pairs
                };
                (0..pairs)
                    .map(|i| base(l).powf(-(i as f64) / pairs as f64) as f32)
                    .collect()
            })
            .collect(),
        rope_mscale: (0..n_layer)
            .map(|l| {
                if f == Family::Qwen && l == 1 {
                    1.2
                } else {
                    1.0
                }
            })
            .collect(),
        window: (0..n_layer)
            .map(|l| (f == Family::Gemma && l == 0).then_some(5))
            .collect(),
        attn_scale: 1.0 / (hd as f32).sqrt(),
        embed_scale: if f == Family::Gemma {
            (hidden as f32).sqrt()
        } else {
            1.0
        },
        activation: if f == Family::Gemma {
            Activation::GeluTanh
        } else {
            Activation::Silu
        },
        qk_norm: f == Family::Gemma,
        post_norms: f == Family::Gemma,
        qkv_bias: f == Family::Qwen,
    }
}

fn build(ctx: &std::sync::Arc<GpuContext>, f: Family, tier: Tier) -> (GpuModel, Reference) {
    let s = spec(f);
    let mut rng = Rng(match f {
        Family::Llama => 1,
        Family::Qwen => 2,
        Family::Gemma => 3,
    });
    let mut b = GpuModelBuilder::new(ctx.clone(), s.clone())
        .expect("spec")
        .with_tier(tier);
    let q8 = WeightFormat::Quant(Source::Q8_0);
    let formats: Vec<WeightFormat> = match f {
        Family::Llama => vec![q8, WeightFormat::Quant(Source::Q4_0), WeightFormat::F16],
        Family::Qwen => vec![WeightFormat::Quant(Source::Q5_1), WeightFormat::F32, q8],
        Family::Gemma => vec![
            WeightFormat::Quant(Source::Q4K),
            WeightFormat::Quant(Source::Q5_0),
            WeightFormat::Quant(Source::Q6K),
        ],
    };
    let mut mat = |b: &mut GpuModelBuilder, slot: Slot, fmt: WeightFormat, rows, cols, scale| {
        // K-quants need whole 256-column super-blocks.
        let fmt = if fmt.block_elems() == 256 && cols % 256 != 0 {
            q8
        } else {
            fmt
        };
        let bytes = random_weights(fmt, rows, cols, scale, &mut rng);
        b.matrix(slot, fmt, rows, cols, &bytes).expect("matrix");
        dequantize(fmt, rows, cols, &bytes)
    };
    let (h, q, kv) = (s.hidden, s.n_head * s.head_dim, s.n_kv_head * s.head_dim);
    let embed = mat(&mut b, Slot::Embed, q8, s.vocab, h, 1.0);
    let output =
        (f != Family::Llama).then(|| mat(&mut b, Slot::Output, formats[0], s.vocab, h, 0.3));
    let mut layers = Vec::new();
    let mut vrng = Rng(99);
    for l in 0..s.n_layer {
        let w = 0.6 / (h as f32).sqrt();
        let mut mats = Vec::new();
        for (i, (slot, rows, cols)) in [
            (LayerSlot::Q, q, h),
            (LayerSlot::K, kv, h),
            (LayerSlot::V, kv, h),
            (LayerSlot::O, h, q),
            (LayerSlot::Gate, s.ffn, h),
            (LayerSlot::Up, s.ffn, h),
            (LayerSlot::Down, h, s.ffn),
        ]
        .into_iter()
        .enumerate()
        {
            let fmt = formats[i % formats.len()];
            mats.push((
                slot,
                mat(&mut b, Slot::Layer(l, slot), fmt, rows, cols, w * 3.0),
            ));
        }
        let mut vecs = Vec::new();
        let mut vec =
            |slot: LayerSlot, len: usize, center: f32, vecs: &mut Vec<(LayerSlot, Vec<f32>)>| {
                let v: Vec<f32> = (0..len).map(|_| center + vrng.sym(0.2)).collect();
                b.vector(Slot::Layer(l, slot), &v).expect("vector");
                vecs.push((slot, v));
            };
        vec(LayerSlot::AttnNorm, h, 1.0, &mut vecs);
        vec(LayerSlot::FfnNorm, h, 1.0, &mut vecs);
        if s.qkv_bias {
            vec(LayerSlot::QBias, q, 0.0, &mut vecs);
            vec(LayerSlot::KBias, kv, 0.0, &mut vecs);
            vec(LayerSlot::VBias, kv, 0.0, &mut vecs);
        }
        if s.qk_norm {
            vec(LayerSlot::QNorm, s.head_dim, 1.0, &mut vecs);
            vec(LayerSlot::KNorm, s.head_dim, 1.0, &mut vecs);
        }
        if s.post_norms {
            vec(LayerSlot::PostAttnNorm, h, 1.0, &mut vecs);
            vec(LayerSlot::PostFfnNorm, h, 1.0, &mut vecs);
        }
        layers.push(RefLayer { mats, vecs });
    }
    let out_norm: Vec<f32> = (0..h).map(|_| 1.0 + vrng.sym(0.2)).collect();
    b.vector(Slot::OutputNorm, &out_norm).expect("norm");
    let model = b.finish().expect("model");
    (
        model,
        Reference {
            spec: s,
            embed,
            output,
            out_norm,
            layers,
        },
    )
}

fn matvec(w: &[f32], x: &[f64]) -> Vec<f64> {
    w.chunks(x.len())
        .map(|r| r.iter().zip(x).map(|(&a, &b)| a as f64 * b).sum())
        .collect()
}

fn rms(x: &[f64], w: &[f32], eps: f32) -> Vec<f64> {
    let ms = x.iter().map(|v| v * v).sum::<f64>() / x.len() as f64;
    let inv = 1.0 / (ms + eps as f64).sqrt();
    x.iter().zip(w).map(|(v, &g)| v * inv * g as f64).collect()
}

fn rope(head: &mut [f64], pos: usize, freq: &[f32], mscale: f32, style: RopeStyle) {
    let pairs = freq.len();
    for (i, &f) in freq.iter().enumerate() {
        let angle = (pos as f32 * f) as f64;
        let (sin, cos) = angle.sin_cos();
        let (sin, cos) = (sin * mscale as f64, cos * mscale as f64);
        let (a, b) = match style {
            RopeStyle::Interleaved => (2 * i, 2 * i + 1),
            RopeStyle::Neox => (i, i + pairs),
        };
        let (x0, x1) = (head[a], head[b]);
        head[a] = x0 * cos - x1 * sin;
        head[b] = x0 * sin + x1 * cos;
    }
}

fn round16(v: f64) -> f64 {
    f16::from_f64(v).to_f64()
}

/// Logits after every token of `tokens`, computed from scratch.
fn reference(m: &Reference, tokens: &[u32]) -> Vec<Vec<f64>> {
    let s = &m.spec;
    let (hd, nh, nkv) = (s.head_dim, s.n_head, s.n_kv_head);
    let group = nh / nkv;
    // Per layer, per position: k and v (f16-rounded).
    let mut cache: Vec<Vec<(Vec<f64>, Vec<f64>)>> = vec![Vec::new(); s.n_layer];
    let mut out = Vec::new();
    for (pos, &t) in tokens.iter().enumerate() {
        let mut x: Vec<f64> = m.embed[t as usize * s.hidden..(t as usize + 1) * s.hidden]
            .iter()
            .map(|&v| (v * s.embed_scale) as f64)
            .collect();
        for (l, layer) in m.layers.iter().enumerate() {
            let xn = rms(&x, layer.v(LayerSlot::AttnNorm).expect("norm"), s.rms_eps);
            let mut q = matvec(layer.m(LayerSlot::Q), &xn);
            let mut k = matvec(layer.m(LayerSlot::K), &xn);
            let mut v = matvec(layer.m(LayerSlot::V), &xn);
            for (buf, slot) in [
                (&mut q, LayerSlot::QBias),
                (&mut k, LayerSlot::KBias),
                (&mut v, LayerSlot::VBias),
            ] {
                if let Some(b) = layer.v(slot) {
                    buf.iter_mut().zip(b).for_each(|(a, &b)| *a += b as f64);
                }
            }
            for (buf, slot) in [(&mut q, LayerSlot::QNorm), (&mut k, LayerSlot::KNorm)] {
                if let Some(w) = layer.v(slot) {
                    for head in buf.chunks_mut(hd) {
                        let n = rms(head, w, s.rms_eps);
                        head.copy_from_slice(&n);
                    }
                }
            }
            for head in q.chunks_mut(hd).chain(k.chunks_mut(hd)) {
                rope(head, pos, &s.inv_freq[l], s.rope_mscale[l], s.rope_style);
            }
            cache[l].push((
                k.iter().map(|&v| round16(v)).collect(),
                v.iter().map(|&v| round16(v)).collect(),
            ));
            let lo = s.window[l].map_or(0, |w| (pos + 1).saturating_sub(w));
            let mut attn = vec![0f64; nh * hd];
            for h in 0..nh {
                let kh = h / group;
                let qh = &q[h * hd..(h + 1) * hd];
                let scores: Vec<f64> = (lo..=pos)
                    .map(|j| {
                        let kj = &cache[l][j].0[kh * hd..(kh + 1) * hd];
                        qh.iter().zip(kj).map(|(a, b)| a * b).sum::<f64>() * s.attn_scale as f64
                    })
                    .collect();
                let mx = scores.iter().cloned().fold(f64::MIN, f64::max);
                let z: f64 = scores.iter().map(|v| (v - mx).exp()).sum();
                for (i, j) in (lo..=pos).enumerate() {
                    let p = (scores[i] - mx).exp() / z;
                    let vj = &cache[l][j].1[kh * hd..(kh + 1) * hd];
                    for d in 0..hd {
                        attn[h * hd + d] += p * vj[d];
                    }
                }
            }
            let mut o = matvec(layer.m(LayerSlot::O), &attn);
            if let Some(w) = layer.v(LayerSlot::PostAttnNorm) {
                o = rms(&o, w, s.rms_eps);
            }
            x.iter_mut().zip(&o).for_each(|(a, b)| *a += b);
            let xn = rms(&x, layer.v(LayerSlot::FfnNorm).expect("norm"), s.rms_eps);
            let g = matvec(layer.m(LayerSlot::Gate), &xn);
            let u = matvec(layer.m(LayerSlot::Up), &xn);
            let hvec: Vec<f64> = g
                .iter()
                .zip(&u)
                .map(|(&g, &u)| {
                    let a = match s.activation {
                        Activation::Silu => g / (1.0 + (-g).exp()),
                        Activation::GeluTanh => {
                            0.5 * g
                                * (1.0
                                    + ((2.0 / std::f64::consts::PI).sqrt()
                                        * (g + 0.044715 * g * g * g))
                                        .tanh())
                        }
                    };
                    a * u
                })
                .collect();
            let mut d = matvec(layer.m(LayerSlot::Down), &hvec);
            if let Some(w) = layer.v(LayerSlot::PostFfnNorm) {
                d = rms(&d, w, s.rms_eps);
            }
            x.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
        }
        let xn = rms(&x, &m.out_norm, s.rms_eps);
        out.push(matvec(m.output.as_ref().unwrap_or(&m.embed), &xn));
    }
    out
}

/// Block ids handed out in a scrambled order, so tables are not the identity.
struct Blocks {
    next: u32,
}

impl Blocks {
    fn take(&mut self, n: usize) -> Vec<u32> {
        (0..n)
            .map(|_| {
                self.next += 1;
                (self.next * 7) % 64
            })
            .collect()
    }
}

fn compare(what: &str, got: &[Vec<f32>], want: &[Vec<f64>], tol: f64) -> f64 {
    assert_eq!(got.len(), want.len(), "{what}: rows");
    let mut worst = 0f64;
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g.len(), w.len());
        let (lo, hi) = w
            .iter()
            .fold((f64::MAX, f64::MIN), |(a, b), &v| (a.min(v), b.max(v)));
        let diff = g
            .iter()
            .zip(w)
            .map(|(&a, &b)| (a as f64 - b).abs())
            .fold(0.0, f64::max);
        let rel = diff / (hi - lo);
        worst = worst.max(rel);
        assert!(
            rel <= tol,
            "{what} row {i}: max |gpu - reference| = {diff:e} is {rel:.2e} of the range (bound {tol})"
        );
    }
    worst
}

fn run(f: Family, tier: Tier) {
    let Some(ctx) = device() else { return };
    run_on(&ctx, f, tier);
}

fn run_on(ctx: &std::sync::Arc<GpuContext>, f: Family, tier: Tier) {
    let t0 = std::time::Instant::now();
    let tier = tier.min(ctx.available());
    let tol = if tier.int8 { 3e-2 } else { 5e-4 };
    let (model, r) = build(ctx, f, tier);
    let mut kv: GpuKv = model.new_kv();
    let mut blocks = Blocks { next: 0 };
    let name = format!(
        "{:?}/{}/{}",
        f as u8,
        tier.name(),
        if ctx.cpu_shapes() {
            "cpu shapes"
        } else {
            "gpu shapes"
        }
    );
    let mut worst = 0f64;

    // A: a 21-token prompt, every logits row (tiled matmul path).
    let a_tokens: Vec<u32> = (0..21).map(|i| (i * 37 + 11) % 300).collect();
    let a_blocks = blocks.take(3); // room for 48 positions
    let items = [ForwardItem {
        blocks: &a_blocks[..2],
        start: 0,
        tokens: &a_tokens,
        all_logits: true,
    }];
    let out = model
        .forward(
            &mut kv,
            &ForwardBatch {
                items: &items,
                copies: &[],
                blocks_in_use: 64,
            },
        )
        .expect("prefill");
    let ra = reference(&r, &a_tokens);
    worst = worst.max(compare(&format!("{name} prefill"), &out[0], &ra, tol));

    // One ragged batch: A decodes a token; B prefills 7 (all rows); C, a fork of A sharing its
    // first block and copying the partial second one, appends 2.
    let b_tokens: Vec<u32> = (0..7).map(|i| (i * 53 + 5) % 300).collect();
    let b_blocks = blocks.take(1);
    let c_own = blocks.take(1);
    let c_blocks = vec![a_blocks[0], c_own[0]];
    let mut a_hist = a_tokens.clone();
    a_hist.push(77);
    let mut c_hist = a_tokens.clone();
    c_hist.extend([123, 45]);
    let items = [
        ForwardItem {
            blocks: &a_blocks[..2],
            start: 21,
            tokens: &[77],
            all_logits: false,
        },
        ForwardItem {
            blocks: &b_blocks,
            start: 0,
            tokens: &b_tokens,
            all_logits: true,
        },
        ForwardItem {
            blocks: &c_blocks,
            start: 21,
            tokens: &[123, 45],
            all_logits: true,
        },
    ];
    let out = model
        .forward(
            &mut kv,
            &ForwardBatch {
                items: &items,
                copies: &[(a_blocks[1], c_own[0])],
                blocks_in_use: 64,
            },
        )
        .expect("batch");
    assert_eq!(out[0].len(), 1);
    worst = worst.max(compare(
        &format!("{name} decode A"),
        &out[0],
        &reference(&r, &a_hist)[21..],
        tol,
    ));
    worst = worst.max(compare(
        &format!("{name} prefill B"),
        &out[1],
        &reference(&r, &b_tokens),
        tol,
    ));
    worst = worst.max(compare(
        &format!("{name} fork C"),
        &out[2],
        &reference(&r, &c_hist)[21..],
        tol,
    ));

    // A alone for a few more steps, past a block boundary and far past the window; the fork's
    // writes must not have touched A's blocks.
    for t in [200u32, 3, 150, 299, 0, 42, 8, 9, 10, 11, 12] {
        let p = a_hist.len();
        let items = [ForwardItem {
            blocks: &a_blocks,
            start: p,
            tokens: &[t],
            all_logits: false,
        }];
        let out = model
            .forward(
                &mut kv,
                &ForwardBatch {
                    items: &items,
                    copies: &[],
                    blocks_in_use: 64,
                },
            )
            .expect("decode");
        a_hist.push(t);
        let want = reference(&r, &a_hist);
        worst = worst.max(compare(
            &format!("{name} decode A@{p}"),
            &out[0],
            &want[p..],
            tol,
        ));
    }
    eprintln!(
        "{name}: worst {worst:.2e} of the range (bound {tol}), {:.1} s",
        t0.elapsed().as_secs_f64()
    );
}

#[test]
fn llama_shaped_model_matches_the_reference() {
    run(Family::Llama, Tier::F32);
    run(
        Family::Llama,
        Tier {
            subgroup: true,
            f16: true,
            int8: true,
        },
    );
}

#[test]
fn qwen_shaped_model_matches_the_reference() {
    run(
        Family::Qwen,
        Tier {
            subgroup: true,
            f16: false,
            int8: false,
        },
    );
    run(
        Family::Qwen,
        Tier {
            subgroup: false,
            f16: true,
            int8: true,
        },
    );
}

#[test]
fn gemma3_shaped_model_matches_the_reference() {
    run(
        Family::Gemma,
        Tier {
            subgroup: true,
            f16: true,
            int8: false,
        },
    );
    run(
        Family::Gemma,
        Tier {
            subgroup: true,
            f16: true,
            int8: true,
        },
    );
}

/// The other adapter kind's kernel shapes (on lavapipe: the GPU's tiled matmuls and split rows).
#[test]
fn other_kernel_shapes_match_the_reference() {
    let Some(ctx) = device() else { return };
    let options = thinkscope_gpu::OpenOptions {
        cpu_shapes: Some(!ctx.cpu_shapes()),
        ..thinkscope_gpu::OpenOptions::new(thinkscope_gpu::AdapterChoice::Any)
    };
    let other = GpuContext::open(&options).expect("device");
    run_on(&other, Family::Gemma, Tier::F32);
    run_on(
        &other,
        Family::Qwen,
        Tier {
            subgroup: true,
            f16: true,
            int8: true,
        },
    );
}

/// Under a tiny binding limit the embedding and LM head are split into row parts, the cache
/// holds four blocks, and 21 logits rows come back in chunks of a few (one submission each):
/// the logits are still the reference's.
#[test]
fn split_weights_and_chunked_logits_match_the_reference() {
    let Some(_) = device() else { return };
    let options = thinkscope_gpu::OpenOptions {
        max_binding_bytes: Some(8192),
        ..thinkscope_gpu::OpenOptions::new(thinkscope_gpu::AdapterChoice::Any)
    };
    let ctx = GpuContext::open(&options).expect("device");
    let (model, r) = build(&ctx, Family::Llama, Tier::F32);
    assert_eq!(model.kv_max_blocks(), 4);
    let mut kv = model.new_kv();
    let tokens: Vec<u32> = (0..21).map(|i| (i * 41 + 3) % 300).collect();
    let items = [ForwardItem {
        blocks: &[3, 1],
        start: 0,
        tokens: &tokens,
        all_logits: true,
    }];
    let out = model
        .forward(
            &mut kv,
            &ForwardBatch {
                items: &items,
                copies: &[],
                blocks_in_use: 4,
            },
        )
        .expect("prefill");
    compare("split", &out[0], &reference(&r, &tokens), 5e-4);
    let too_many = model.forward(
        &mut kv,
        &ForwardBatch {
            items: &items,
            copies: &[],
            blocks_in_use: 5,
        },
    );
    assert!(too_many.is_err(), "more blocks than the device holds");
}

#[test]
fn bad_batches_are_errors_not_panics() {
    let Some(ctx) = device() else { return };
    let (model, _) = build(&ctx, Family::Llama, Tier::F32);
    let mut kv = model.new_kv();
    let ok_blocks = [0u32, 1];
    let cases: Vec<(Vec<u32>, Vec<u32>, usize, usize)> = vec![
        (vec![], ok_blocks.to_vec(), 0, 4),        // no tokens
        (vec![300], ok_blocks.to_vec(), 0, 4),     // outside the vocabulary
        (vec![1; 20], vec![0], 0, 4),              // table too short
        (vec![1], vec![9], 0, 4),                  // block not below blocks_in_use
        (vec![1], ok_blocks.to_vec(), 127, 4),     // past the context
        (vec![1], ok_blocks.to_vec(), 0, 1 << 30), // more blocks than the device holds
    ];
    for (tokens, table, start, in_use) in cases {
        let items = [ForwardItem {
            blocks: &table,
            start,
            tokens: &tokens,
            all_logits: false,
        }];
        let r = model.forward(
            &mut kv,
            &ForwardBatch {
                items: &items,
                copies: &[],
                blocks_in_use: in_use,
            },
        );
        assert!(
            r.is_err(),
            "{tokens:?} {table:?} {start} {in_use} was accepted"
        );
    }
    let items = [ForwardItem {
        blocks: &ok_blocks,
        start: 0,
        tokens: &[1],
        all_logits: false,
    }];
    let r = model.forward(
        &mut kv,
        &ForwardBatch {
            items: &items,
            copies: &[(0, 0)],
            blocks_in_use: 4,
        },
    );
    assert!(r.is_err(), "a block copied onto itself");
    // The model still works after refusing.
    let out = model
        .forward(
            &mut kv,
            &ForwardBatch {
                items: &items,
                copies: &[],
                blocks_in_use: 4,
            },
        )
        .expect("good batch");
    assert_eq!(out[0][0].len(), 300);
}
