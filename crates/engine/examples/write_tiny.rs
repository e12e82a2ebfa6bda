//! Write one of the tiny random-weight models to a file, for trying the app or the CLI on an
//! architecture or a thinking model without a real download:
//!
//! ```text
//! cargo run --release -p thinkscope-engine --example write_tiny -- qwen3-thinker /tmp/qwen3-thinker.gguf
//! ```
//!
//! Without arguments it lists the names (the oracle models and the `*-thinker` models).

use std::path::PathBuf;

use thinkscope_engine::tiny::{oracle_spec, oracle_specs, thinker_specs, write_tiny_model};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let (Some(name), Some(out)) = (args.first(), args.get(1)) else {
        eprintln!("usage: write_tiny NAME OUT.gguf");
        eprintln!("names:");
        for (name, _) in oracle_specs().into_iter().chain(thinker_specs()) {
            eprintln!("  {name}");
        }
        std::process::exit(2);
    };
    let Some(spec) = oracle_spec(name) else {
        return Err(format!(
            "no tiny model is called '{name}' (run without arguments for the list)"
        )
        .into());
    };
    let out = PathBuf::from(out);
    write_tiny_model(&out, &spec)?;
    println!("wrote {}", out.display());
    Ok(())
}
