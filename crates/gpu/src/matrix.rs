//! Weight matrices on the device, and the matmul dispatches that read them.
//!
//! A matrix is uploaded in the shader layout (format.rs), split by rows into parts when its
//! codes or scales would exceed the adapter's largest storage binding (Gemma 3's 262k-row
//! embedding is one such matrix). `y = x · Wᵀ` picks, by the number of activation rows `n`:
//! the mat-vec kernel specialised for n rounded up to 1, 2, 4, 8 or 16 (tree branches decode in
//! small batches), or above 16 rows the tiled matmul (on a software adapter, mat-vecs of 16 rows
//! at a time); each in its packed-int8 form on the int8 tier.

use std::sync::Arc;

use crate::context::{GpuContext, Tier};
use crate::error::GpuError;
use crate::format::{repack, WeightFormat};
use crate::pipelines::{Binder, Buf, Kernel, KernelSpec, Recorder, Sig};

/// Rows `row0 .. row0 + rows` of a matrix.
pub(crate) struct Part {
    pub row0: usize,
    pub rows: usize,
    pub codes: Buf,
    pub scales: Buf,
    pub hi_off: u32,
}

/// A weight matrix `[rows, cols]` in GPU memory.
pub struct GpuMatrix {
    format: WeightFormat,
    rows: usize,
    cols: usize,
    pub(crate) parts: Vec<Part>,
    bytes: u64,
}

impl std::fmt::Debug for GpuMatrix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "GpuMatrix({} {}x{}, {} parts)",
            self.format.name(),
            self.rows,
            self.cols,
            self.parts.len()
        )
    }
}

impl GpuMatrix {
    /// Repack and upload a matrix given as GGML rows (`bytes` is the whole tensor).
    pub fn upload(
        ctx: &GpuContext,
        format: WeightFormat,
        rows: usize,
        cols: usize,
        bytes: &[u8],
    ) -> Result<Self, GpuError> {
        if rows == 0 || cols == 0 || !cols.is_multiple_of(format.block_elems().max(32)) {
            return Err(GpuError::Invalid(format!(
                "a {} matrix of {rows} x {cols} is not whole blocks",
                format.name()
            )));
        }
        let row_bytes = format.row_bytes(cols);
        if bytes.len() != rows * row_bytes {
            return Err(GpuError::Invalid(format!(
                "{} bytes for a {} matrix of {rows} x {cols} ({} expected)",
                bytes.len(),
                format.name(),
                rows * row_bytes
            )));
        }
        let blocks = cols / 32;
        let code_row =
            4 * blocks as u64 * (format.code_words() + format.has_hi_plane() as usize) as u64;
        let scale_row = 4 * format.scale_words(cols) as u64 + 4;
        let per_part = (ctx.max_binding / code_row.max(scale_row)).max(1) as usize;
        let mut parts = Vec::new();
        let mut total = 0;
        let mut row0 = 0;
        while row0 < rows {
            let n = per_part.min(rows - row0);
            let rp = repack(
                format,
                n,
                cols,
                &bytes[row0 * row_bytes..(row0 + n) * row_bytes],
            )?;
            let as_bytes =
                |w: &[u32]| -> Vec<u8> { w.iter().flat_map(|v| v.to_le_bytes()).collect() };
            let codes = ctx.upload("weight codes", &as_bytes(&rp.codes))?;
            let scales = ctx.upload("weight scales", &as_bytes(&rp.scales))?;
            total += codes.bytes + scales.bytes;
            parts.push(Part {
                row0,
                rows: n,
                codes,
                scales,
                hi_off: rp.hi_off,
            });
            row0 += n;
        }
        Ok(Self {
            format,
            rows,
            cols,
            parts,
            bytes: total,
        })
    }

    /// Output width.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Input width.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// Format of the file's tensor.
    pub fn format(&self) -> WeightFormat {
        self.format
    }

    /// GPU bytes held.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Row-split parts (1 unless the matrix exceeds the binding limit).
    pub fn part_count(&self) -> usize {
        self.parts.len()
    }
}

/// Where an activation matrix lives: `n` rows of `cols` floats, `stride` floats apart from
/// float `off` of `buf`.
#[derive(Clone, Copy)]
pub(crate) struct Acts<'a> {
    pub buf: &'a Buf,
    pub off: u32,
    pub stride: u32,
    pub n: u32,
}

/// 8-bit activations written by `quantize`: codes, then scales at `d_off`, sums at `s_off`.
#[derive(Clone, Copy)]
pub(crate) struct QActs<'a> {
    pub buf: &'a Buf,
    pub d_off: u32,
    pub s_off: u32,
}

/// Words of 8-bit activations for `n` rows of `cols`.
pub(crate) fn qacts_words(n: usize, cols: usize) -> usize {
    n * cols / 4 + n * cols / 32 * 3
}

/// Bucket of activation rows a mat-vec is specialised for.
fn bucket(n: u32) -> u32 {
    n.next_power_of_two().max(1)
}

/// Mat-vec kernels take at most this many activation rows; more go to the tiled matmul (or, on a
/// software adapter, to mat-vecs of 16 rows at a time: a CPU has no use for the tile's barriers).
pub(crate) const MATVEC_MAX: u32 = 16;

/// Invocations sharing one weight row in a mat-vec: 1 on a software adapter (each SIMD lane its
/// own row, no reduction), else enough that a matrix of `rows` makes about 256 workgroups.
fn slices(ctx: &GpuContext, rows: usize) -> u32 {
    if ctx.cpu_shapes {
        1
    } else {
        ((16384 / rows.max(1)) as u32)
            .next_power_of_two()
            .clamp(1, 8)
    }
}

pub(crate) fn matvec_kernel(
    ctx: &GpuContext,
    format: WeightFormat,
    n: u32,
    dot8: bool,
    s: u32,
) -> Result<Arc<Kernel>, GpuError> {
    let (mut flags, min_off) = format.flags();
    if dot8 {
        flags.push("DOT8");
    }
    let tiled = n > MATVEC_MAX;
    let mut consts = vec![("MIN_OFFSET", min_off.to_owned())];
    let shader = match (tiled, dot8) {
        (true, false) => "matmul.wgsl",
        (true, true) => "matmul_dot8.wgsl",
        (false, false) => "matvec.wgsl",
        (false, true) => "matvec_dot8.wgsl",
    };
    if !tiled {
        consts.push(("NR", bucket(n).to_string()));
        consts.push(("S", s.to_string()));
    }
    ctx.kernel(&KernelSpec {
        shader,
        flags,
        consts,
        sig: Sig {
            reads: 3,
            writes: 1,
        },
        // The matmuls use no subgroup or f16 features: their reductions are per invocation.
        tier: Tier::F32,
    })
}

/// Whether `m` runs on 8-bit activations at `tier` (every batch size alike, so a token's result
/// does not depend on the rows that shared its pass).
pub(crate) fn uses_dot8(m: &GpuMatrix, tier: Tier) -> bool {
    tier.int8 && m.format.has_codes()
}

/// Record `y[:, y_off .. y_off + rows] = x · Wᵀ` (output rows `y_stride` floats apart).
#[allow(clippy::too_many_arguments)]
pub(crate) fn record_matmul(
    ctx: &GpuContext,
    binder: &mut Binder,
    rec: &mut Recorder,
    tier: Tier,
    m: &GpuMatrix,
    x: Acts<'_>,
    xq: Option<QActs<'_>>,
    y: &Buf,
    y_stride: u32,
    y_off: u32,
) -> Result<(), GpuError> {
    let n = x.n;
    if n == 0 {
        return Ok(());
    }
    let dot8 = uses_dot8(m, tier) && xq.is_some();
    let (cols, blocks) = (m.cols as u32, m.cols as u32 / 32);
    let tiled = n > MATVEC_MAX && !ctx.cpu_shapes;
    let chunk = if tiled { n } else { MATVEC_MAX };
    for part in &m.parts {
        let s = if tiled { 1 } else { slices(ctx, part.rows) };
        let mut c0 = 0u32;
        while c0 < n {
            let nc = chunk.min(n - c0);
            let k = matvec_kernel(ctx, m.format, nc, dot8, s)?;
            let y0 = y_off + part.row0 as u32 + c0 * y_stride;
            let (src, p) = match (dot8, xq) {
                (true, Some(q)) => (
                    q.buf,
                    vec![
                        part.rows as u32,
                        cols,
                        nc,
                        c0 * cols / 4,
                        y_stride,
                        y0,
                        part.hi_off,
                        q.d_off + c0 * blocks,
                        q.s_off + c0 * blocks * 2,
                    ],
                ),
                _ => (
                    x.buf,
                    vec![
                        part.rows as u32,
                        cols,
                        nc,
                        x.stride,
                        y_stride,
                        y0,
                        part.hi_off,
                        x.off + c0 * x.stride,
                    ],
                ),
            };
            let bind = binder.bind(ctx, &k, &[&part.codes, &part.scales, src, y])?;
            if tiled {
                rec.dispatch_xy(
                    &k,
                    bind,
                    &p,
                    ((part.rows as u32).div_ceil(64), nc.div_ceil(32)),
                );
            } else {
                rec.dispatch(&k, bind, &p, (part.rows as u32).div_ceil(64 / s));
            }
            c0 += nc;
        }
    }
    Ok(())
}

/// Record the 8-bit quantization of `x` (cols floats a row) into `out`.
pub(crate) fn record_quantize<'a>(
    ctx: &GpuContext,
    binder: &mut Binder,
    rec: &mut Recorder,
    x: Acts<'_>,
    cols: u32,
    out: &'a Buf,
) -> Result<QActs<'a>, GpuError> {
    let k = ctx.kernel(&KernelSpec {
        shader: "quantize.wgsl",
        flags: vec![],
        consts: vec![],
        sig: Sig {
            reads: 1,
            writes: 1,
        },
        tier: Tier::F32,
    })?;
    let d_off = x.n * cols / 4;
    let s_off = d_off + x.n * cols / 32;
    let bind = binder.bind(ctx, &k, &[x.buf, out])?;
    let p = [x.n, cols, x.stride, x.off, d_off, s_off];
    rec.dispatch(&k, bind, &p, (x.n * cols / 32).div_ceil(64));
    Ok(QActs {
        buf: out,
        d_off,
        s_off,
    })
}
