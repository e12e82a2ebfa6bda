//! `thinkscope-cli strategies`: the registry, as text or JSON.

use serde::Serialize;
use thinkscope_engine::strategy::{registry, Knob, KnobKind, LabMode};

/// One strategy as `strategies --json` prints it.
#[derive(Serialize)]
struct Entry {
    name: &'static str,
    aliases: &'static [&'static str],
    title: &'static str,
    summary: &'static str,
    reasoning: bool,
    lab: LabMode,
    knobs: Vec<Knob>,
}

fn range(k: &Knob) -> String {
    match &k.kind {
        KnobKind::Int { min, max, default } => format!("{min}..={max}, default {default}"),
        KnobKind::Float { min, max, default } => format!("{min}..={max}, default {default}"),
        KnobKind::Choice { options, default } => {
            let names: Vec<&str> = options.iter().map(|(o, _)| *o).collect();
            format!("{}; default {default}", names.join(" | "))
        }
        KnobKind::Bool { default } => format!("true | false, default {default}"),
        KnobKind::Text { default } => format!("text, default {default:?}"),
    }
}

pub fn list(json: bool) -> anyhow::Result<()> {
    let entries: Vec<Entry> = registry()
        .all()
        .iter()
        .map(|d| Entry {
            name: d.name(),
            aliases: d.aliases(),
            title: d.title(),
            summary: d.summary(),
            reasoning: d.reasoning(),
            lab: d.lab_mode(),
            knobs: d.knobs(),
        })
        .collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&entries)?);
        return Ok(());
    }
    for e in &entries {
        println!("{:<18} {}", e.name, e.summary);
        for k in &e.knobs {
            let flag = k
                .role
                .map(|r| format!(" (--{})", r.flag()))
                .unwrap_or_default();
            println!(
                "    {:<14} {}{flag}: {} [{}]",
                k.key,
                k.label,
                k.help,
                range(k)
            );
        }
    }
    println!(
        "\nSet any knob with --set KEY=VALUE; --samples, --depth and --thinking set the knobs marked with them."
    );
    Ok(())
}
