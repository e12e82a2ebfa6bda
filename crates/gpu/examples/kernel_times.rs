//! Per-dispatch times of the matmul kernels at one model's shapes (SmolLM2-135M by default):
//! `cargo run --release -p thinkscope-gpu --example kernel_times [--any]`.

use thinkscope_gpu::{
    ops, AdapterChoice, GpuContext, GpuMatrix, OpenOptions, Source, Tier, WeightFormat,
};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let any = std::env::args().any(|a| a == "--any");
    let choice = if any {
        AdapterChoice::Any
    } else {
        AdapterChoice::Hardware
    };
    let ctx = GpuContext::open(&OpenOptions::new(choice))?;
    println!("{}", ctx.description());
    let shapes = [
        ("q/o 576x576", WeightFormat::Quant(Source::Q4_1), 576, 576),
        (
            "gate 1536x576",
            WeightFormat::Quant(Source::Q4_1),
            1536,
            576,
        ),
        (
            "down 576x1536",
            WeightFormat::Quant(Source::Q4_1),
            576,
            1536,
        ),
        (
            "head 49152x576",
            WeightFormat::Quant(Source::Q8_0),
            49152,
            576,
        ),
    ];
    for (name, format, rows, cols) in shapes {
        let bytes = vec![0u8; rows * format.row_bytes(cols)];
        let m = GpuMatrix::upload(&ctx, format, rows, cols, &bytes)?;
        for tier in [Tier::F32, ctx.available()] {
            for n in [1usize, 4, 16, 64] {
                let reps = if rows > 10_000 { 4 } else { 20 };
                let s = ops::time_matmul(&ctx, &m, n, tier, reps)?;
                println!(
                    "{name:16} {:6} {:20} n={n:3}: {:8.3} ms",
                    format.name(),
                    tier.name(),
                    s * 1e3
                );
            }
        }
    }
    Ok(())
}
