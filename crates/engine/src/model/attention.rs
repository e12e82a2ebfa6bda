//! Attention over the paged f16 caches.
//!
//! Work is cut into tasks of (up to 16 consecutive query rows of one sequence) × (one cached
//! key/value head) × (a chunk of cached positions). Each cached key and value is converted from
//! f16 once per task and used by every row and every query head that shares it, and when there
//! are too few rows to keep the threads busy (decoding one sequence) the positions are split into
//! chunks whose partial softmax sums are merged afterwards, so long-context decoding uses every
//! thread.

use rayon::prelude::*;

use super::cpu::SeqView;
use super::math::fast_exp;
use crate::backend::KvLayout;

/// Query rows per task.
const ROW_BLOCK: usize = 16;
/// Fewest positions in a chunk when splitting for parallelism.
const MIN_CHUNK: usize = 128;

/// Head geometry of one layer.
pub(super) struct Heads {
    pub n_head: usize,
    pub n_kv_head: usize,
    pub head_dim: usize,
    pub scale: f32,
    /// Sliding window (positions a query may see, itself included), if the layer has one.
    pub window: Option<usize>,
}

/// One task's result: per (row, query head of the group) the running max, the sum of
/// exponentials and the unnormalised weighted sum of values.
struct Partial {
    row0: usize,
    rows: usize,
    kv_head: usize,
    m: Vec<f32>,
    l: Vec<f32>,
    acc: Vec<f32>,
}

/// Attention for every row: `q` and `out` are `[rows][n_head · head_dim]`; row `r` belongs to
/// `caches[row_item[r]]` at position `row_pos[r]` (its own key/value already written).
#[allow(clippy::too_many_arguments)]
pub(super) fn attention(
    caches: &[SeqView<'_>],
    layout: &KvLayout,
    layer: usize,
    row_item: &[usize],
    row_pos: &[usize],
    q: &[f32],
    h: &Heads,
    out: &mut [f32],
) {
    let rows = row_pos.len();
    let first = |r: usize| h.window.map_or(0, |w| (row_pos[r] + 1).saturating_sub(w));
    // Blocks of consecutive positions of one sequence.
    let mut blocks: Vec<(usize, usize)> = Vec::new();
    for r in 0..rows {
        match blocks.last_mut() {
            Some((r0, n))
                if *n < ROW_BLOCK
                    && row_item[r] == row_item[*r0]
                    && row_pos[r] == row_pos[r - 1] + 1 =>
            {
                *n += 1
            }
            _ => blocks.push((r, 1)),
        }
    }
    let base = blocks.len() * h.n_kv_head;
    let want = 2 * rayon::current_num_threads();
    let mut tasks: Vec<(usize, usize, usize, usize, usize)> = Vec::new();
    for &(r0, n) in &blocks {
        let (lo, hi) = (first(r0), row_pos[r0 + n - 1] + 1);
        let splits = if base >= want {
            1
        } else {
            want.div_ceil(base)
                .min((hi - lo).div_ceil(MIN_CHUNK))
                .max(1)
        };
        let chunk = (hi - lo).div_ceil(splits);
        for kh in 0..h.n_kv_head {
            let mut c0 = lo;
            while c0 < hi {
                let c1 = (c0 + chunk).min(hi);
                tasks.push((r0, n, kh, c0, c1));
                c0 = c1;
            }
        }
    }
    let partials: Vec<Partial> = tasks
        .into_par_iter()
        .map(|(r0, n, kh, c0, c1)| {
            let cache = caches[row_item[r0]];
            task(cache, layout, layer, q, h, r0, n, kh, c0..c1, |r| {
                (first(r), row_pos[r])
            })
        })
        .collect();

    // Merge the partial softmax sums of each (row, head), then normalise.
    let (hd, group, q_dim) = (h.head_dim, h.n_head / h.n_kv_head, h.n_head * h.head_dim);
    let mut m = vec![f32::NEG_INFINITY; rows * h.n_head];
    let mut l = vec![0f32; rows * h.n_head];
    out[..rows * q_dim].fill(0.0);
    for p in &partials {
        for i in 0..p.rows {
            for g in 0..group {
                let (src, head) = (i * group + g, p.kv_head * group + g);
                let dst = (p.row0 + i) * h.n_head + head;
                if p.m[src] == f32::NEG_INFINITY {
                    continue;
                }
                let new_m = m[dst].max(p.m[src]);
                let (a, b) = (fast_exp(m[dst] - new_m), fast_exp(p.m[src] - new_m));
                let a = if m[dst] == f32::NEG_INFINITY { 0.0 } else { a };
                l[dst] = l[dst] * a + p.l[src] * b;
                m[dst] = new_m;
                let o = &mut out[(p.row0 + i) * q_dim + head * hd..][..hd];
                let acc = &p.acc[src * hd..][..hd];
                o.iter_mut().zip(acc).for_each(|(o, v)| *o = *o * a + v * b);
            }
        }
    }
    for (r, o) in out.chunks_mut(q_dim).take(rows).enumerate() {
        for (head, o) in o.chunks_mut(hd).enumerate() {
            let l = l[r * h.n_head + head];
            if l > 0.0 {
                let inv = 1.0 / l;
                o.iter_mut().for_each(|v| *v *= inv);
            }
        }
    }
}

/// Rows `r0 .. r0 + n` against positions `range` of kv head `kh`. `bounds(r)` is the first and
/// last position row `r` may see.
#[allow(clippy::too_many_arguments)]
fn task(
    cache: SeqView<'_>,
    layout: &KvLayout,
    layer: usize,
    q: &[f32],
    h: &Heads,
    r0: usize,
    n: usize,
    kh: usize,
    range: std::ops::Range<usize>,
    bounds: impl Fn(usize) -> (usize, usize),
) -> Partial {
    let (hd, group, q_dim) = (h.head_dim, h.n_head / h.n_kv_head, h.n_head * h.head_dim);
    let len = range.len();
    let lanes = n * group;
    let mut scores = vec![f32::NEG_INFINITY; lanes * len];
    let mut row = vec![0f32; hd];
    let qv = |i: usize, g: usize| &q[(r0 + i) * q_dim + (kh * group + g) * hd..][..hd];
    let visible: Vec<(usize, usize)> = (0..n).map(|i| bounds(r0 + i)).collect();
    for (j, pos) in range.clone().enumerate() {
        half::slice::HalfFloatSliceExt::convert_to_f32_slice(
            cache.key(layout, layer, kh, pos),
            &mut row,
        );
        for (i, &(lo, hi)) in visible.iter().enumerate() {
            if pos < lo || pos > hi {
                continue;
            }
            for g in 0..group {
                scores[(i * group + g) * len + j] = dot(qv(i, g), &row) * h.scale;
            }
        }
    }
    let mut m = vec![f32::NEG_INFINITY; lanes];
    let mut l = vec![0f32; lanes];
    for (s, (m, l)) in scores.chunks_mut(len).zip(m.iter_mut().zip(l.iter_mut())) {
        *m = s.iter().fold(f32::NEG_INFINITY, |a, &v| a.max(v));
        if *m == f32::NEG_INFINITY {
            s.fill(0.0);
            continue;
        }
        let max = *m;
        for v in s.iter_mut() {
            *v = if *v == f32::NEG_INFINITY {
                0.0
            } else {
                fast_exp(*v - max)
            };
        }
        *l = s.iter().sum();
    }
    let mut acc = vec![0f32; lanes * hd];
    for (j, pos) in range.enumerate() {
        half::slice::HalfFloatSliceExt::convert_to_f32_slice(
            cache.value(layout, layer, kh, pos),
            &mut row,
        );
        for lane in 0..lanes {
            let p = scores[lane * len + j];
            if p != 0.0 {
                acc[lane * hd..(lane + 1) * hd]
                    .iter_mut()
                    .zip(&row)
                    .for_each(|(a, v)| *a += p * v);
            }
        }
    }
    Partial {
        row0: r0,
        rows: n,
        kv_head: kh,
        m,
        l,
        acc,
    }
}

#[inline]
fn dot(a: &[f32], b: &[f32]) -> f32 {
    // Eight independent accumulators let the compiler vectorise.
    let mut acc = [0f32; 8];
    let (ac, bc) = (a.chunks_exact(8), b.chunks_exact(8));
    let (ar, br) = (ac.remainder(), bc.remainder());
    for (x, y) in ac.zip(bc) {
        for l in 0..8 {
            acc[l] += x[l] * y[l];
        }
    }
    acc.iter().sum::<f32>() + ar.iter().zip(br).map(|(x, y)| x * y).sum::<f32>()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::cpu::CpuKv;
    use crate::model::sampling::Rng;

    /// Softmax attention in f64 over the cache's (f16-rounded) keys and values.
    fn reference(
        cache: SeqView<'_>,
        layout: &KvLayout,
        q: &[f32],
        pos: usize,
        h: &Heads,
    ) -> Vec<f32> {
        let (hd, group) = (h.head_dim, h.n_head / h.n_kv_head);
        let lo = h.window.map_or(0, |w| (pos + 1).saturating_sub(w));
        let mut out = vec![0f32; h.n_head * hd];
        for head in 0..h.n_head {
            let qh = &q[head * hd..(head + 1) * hd];
            let kh = head / group;
            let s: Vec<f64> = (lo..=pos)
                .map(|j| {
                    let k = cache.key(layout, 0, kh, j);
                    qh.iter()
                        .zip(k)
                        .map(|(a, b)| *a as f64 * b.to_f64())
                        .sum::<f64>()
                        * h.scale as f64
                })
                .collect();
            let m = s.iter().cloned().fold(f64::MIN, f64::max);
            let z: f64 = s.iter().map(|v| (v - m).exp()).sum();
            for (i, j) in (lo..=pos).enumerate() {
                let p = (s[i] - m).exp() / z;
                let v = cache.value(layout, 0, kh, j);
                for d in 0..hd {
                    out[head * hd + d] += (p * v[d].to_f64()) as f32;
                }
            }
        }
        out
    }

    #[test]
    fn split_and_whole_attention_match_a_reference() {
        let layout = KvLayout {
            n_layer: 1,
            n_kv_head: 2,
            head_dim: 24,
        };
        let n: usize = 300;
        let table: Vec<u32> = (0..n.div_ceil(crate::backend::BLOCK_TOKENS) as u32).collect();
        let mut kv = CpuKv::new(layout);
        kv.resize(table.len());
        let mut rng = Rng::new(4);
        let mut rand = |len: usize| -> Vec<f32> {
            (0..len)
                .map(|_| 2.0 * rng.next_f64() as f32 - 1.0)
                .collect()
        };
        for p in 0..n {
            kv.write(&table, 0, p, &rand(48), &rand(48));
        }
        let cache = kv.view(&table);
        // Four threads ask for eight tasks: one decoding row is split over its positions.
        let pool4 = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .expect("threads");
        for window in [None, Some(40)] {
            let h = Heads {
                n_head: 6,
                n_kv_head: 2,
                head_dim: 24,
                scale: 0.3,
                window,
            };
            let q = rand(n * 6 * 24);
            let q_dim = 6 * 24;
            // Every row in one call (blocks of 16 rows, no split) ...
            let mut whole = vec![0f32; n * q_dim];
            let items = vec![0; n];
            let positions: Vec<usize> = (0..n).collect();
            pool4.install(|| {
                attention(&[cache], &layout, 0, &items, &positions, &q, &h, &mut whole)
            });
            // ... and the last rows alone (split over positions and merged).
            for pos in [n - 1, 200, 17] {
                let mut one = vec![0f32; q_dim];
                let qr = &q[pos * q_dim..(pos + 1) * q_dim];
                pool4.install(|| attention(&[cache], &layout, 0, &[0], &[pos], qr, &h, &mut one));
                let want = reference(cache, &layout, qr, pos, &h);
                for (i, w) in want.iter().enumerate() {
                    let (a, b) = (one[i], whole[pos * q_dim + i]);
                    assert!(
                        (a - w).abs() < 1e-5,
                        "{window:?} pos {pos} split: {a} vs {w}"
                    );
                    assert!(
                        (b - w).abs() < 1e-5,
                        "{window:?} pos {pos} whole: {b} vs {w}"
                    );
                }
            }
        }
    }
}
