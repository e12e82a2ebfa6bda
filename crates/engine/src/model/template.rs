//! Chat templates from GGUF metadata, rendered with a real Jinja engine (minijinja).
//!
//! A chat template is code from the model file, so it runs bounded: the source is at most
//! [`MAX_TEMPLATE_BYTES`]; every render has [`FUEL`] instructions of fuel (a loop that would run
//! for hours stops with an error), a recursion limit, an output limit, and the filters and
//! string methods that take a size (`indent(width)`, `tojson(indent)`, printf and `str.format`
//! widths, `batch`/`slice` counts, `replace`, `join`) or consume a whole sequence refuse sizes
//! beyond [`MAX_WIDTH`], [`MAX_VALUE_BYTES`] and [`MAX_ITEMS`] before allocating. minijinja
//! itself caps `range()` at 100,000 items and string repetition at 100 MB. The render runs on
//! its own thread and the caller waits at most [`RENDER_DEADLINE`], so nothing a template does
//! blocks the caller longer than that.
//!
//! What this cannot bound: minijinja has no hook on its operators, so repeated `~`/`+`
//! concatenation through a `namespace()` or a recursive macro, `*` on a lazily repeated list and
//! `in` over one still cost memory or time in proportion to the sizes the template builds
//! (fuel bounds how many such operations run, not how big each one is). A render past the
//! deadline is abandoned and its thread left to exhaust its fuel.
//!
//! A template that fails to compile (or is too large) does not stop the model from loading:
//! it is kept as an error, every render reports it, and plain completion still works.

use std::io::Write;
use std::sync::Arc;
use std::time::Duration;

use minijinja::value::{Kwargs, Rest, StringInput, Value};
use minijinja::{context, Environment, Error as JinjaError, ErrorKind, State};
use serde::{Deserialize, Serialize};

use crate::error::{EngineError, Result};

/// Largest template source accepted (real ones are a few KiB, tool-use ones tens of KiB).
pub const MAX_TEMPLATE_BYTES: usize = 1 << 20;
/// Instructions one render may execute. Real templates use a few hundred per message (the
/// tests measure the tiny and default models' templates); this leaves room for 1,000-message
/// conversations and stops runaway loops within milliseconds.
pub const FUEL: u64 = 1_000_000;
/// Recursion depth (includes, macro calls) one render may reach.
pub const RECURSION_LIMIT: usize = 100;
/// Output allowed beyond four times the messages' own size.
pub const MAX_OUTPUT_BYTES: usize = 1 << 20;
/// Largest string a size-taking filter or method may build.
pub const MAX_VALUE_BYTES: usize = 1 << 20;
/// Largest width or indent a filter or format specification may ask for.
pub const MAX_WIDTH: usize = 1024;
/// Most items a filter may consume or produce (minijinja's own `range()` limit).
pub const MAX_ITEMS: usize = 100_000;
/// Longest a caller waits for one render.
pub const RENDER_DEADLINE: Duration = Duration::from_secs(1);

/// One chat message.
#[derive(Clone, Debug, Serialize, Deserialize, PartialEq, Eq)]
pub struct Message {
    /// `system`, `user` or `assistant`.
    pub role: String,
    /// The message text.
    pub content: String,
}

impl Message {
    /// A message with the given role.
    pub fn new(role: &str, content: impl Into<String>) -> Self {
        Self {
            role: role.to_owned(),
            content: content.into(),
        }
    }
}

/// A chat template: compiled, or the reason it could not be.
pub struct ChatTemplate {
    env: std::result::Result<Arc<Environment<'static>>, String>,
    bos: String,
    eos: String,
}

impl ChatTemplate {
    /// Compile `source`; `bos`/`eos` are exposed to the template as `bos_token`/`eos_token`.
    ///
    /// Never fails: a template that does not compile or is too large is kept as that error,
    /// which [`Self::render`] returns and [`Self::error`] shows, so the model still loads.
    pub fn new(source: &str, bos: &str, eos: &str) -> Result<Self> {
        let env = compile(source).map_err(|e| {
            tracing::warn!("the model's chat template is unusable: {e}");
            e
        });
        Ok(Self {
            env,
            bos: bos.to_owned(),
            eos: eos.to_owned(),
        })
    }

    /// Why the template cannot be used, if it cannot.
    pub fn error(&self) -> Option<&str> {
        self.env.as_ref().err().map(String::as_str)
    }

    /// Render a conversation, ending with the assistant's turn opened.
    pub fn render(&self, messages: &[Message]) -> Result<String> {
        self.render_with(messages, None)
    }

    /// Render a conversation with thinking switched on or off: `enable_thinking` is passed to
    /// the template as Qwen3's and SmolLM3's templates expect it (`None`: left undefined, the
    /// template's own default). Templates without the switch ignore it.
    pub fn render_with(
        &self,
        messages: &[Message],
        enable_thinking: Option<bool>,
    ) -> Result<String> {
        let job = self.job(messages, enable_thinking)?;
        let (tx, rx) = crossbeam_channel::bounded(1);
        std::thread::Builder::new()
            .name("thinkscope-template".into())
            .stack_size(16 << 20)
            .spawn(move || {
                let _ = tx.send(job.run());
            })
            .map_err(|e| EngineError::Template(format!("could not start rendering: {e}")))?;
        match rx.recv_timeout(RENDER_DEADLINE) {
            Ok(result) => result.map_err(EngineError::Template),
            Err(crossbeam_channel::RecvTimeoutError::Timeout) => {
                Err(EngineError::Template(format!(
                    "rendering took longer than {} s and was abandoned",
                    RENDER_DEADLINE.as_secs_f32()
                )))
            }
            Err(crossbeam_channel::RecvTimeoutError::Disconnected) => Err(EngineError::Template(
                "rendering stopped without a result (the template engine panicked)".into(),
            )),
        }
    }

    /// Render on the calling thread, with every bound but the deadline (for fuzzing, where a
    /// slow input should be seen, not abandoned).
    #[doc(hidden)]
    pub fn render_here(&self, messages: &[Message]) -> Result<String> {
        self.job(messages, None)?
            .run()
            .map_err(EngineError::Template)
    }

    fn job(&self, messages: &[Message], enable_thinking: Option<bool>) -> Result<RenderJob> {
        let env = self
            .env
            .as_ref()
            .map_err(|e| EngineError::Template(e.clone()))?;
        let input: usize = messages
            .iter()
            .map(|m| m.content.len() + m.role.len())
            .sum();
        Ok(RenderJob {
            env: env.clone(),
            messages: messages.to_vec(),
            bos: self.bos.clone(),
            eos: self.eos.clone(),
            enable_thinking,
            limit: MAX_OUTPUT_BYTES.saturating_add(input.saturating_mul(4)),
        })
    }
}

/// Everything one render needs, owned, so it can run on its own thread.
struct RenderJob {
    env: Arc<Environment<'static>>,
    messages: Vec<Message>,
    bos: String,
    eos: String,
    enable_thinking: Option<bool>,
    limit: usize,
}

impl RenderJob {
    fn run(self) -> std::result::Result<String, String> {
        let tmpl = self
            .env
            .get_template("chat")
            .map_err(|e| format!("{e:#}"))?;
        let mut out = LimitedWriter {
            buf: Vec::new(),
            limit: self.limit,
        };
        let base = context! {
            messages => self.messages,
            add_generation_prompt => true,
            bos_token => self.bos,
            eos_token => self.eos,
        };
        let ctx = match self.enable_thinking {
            Some(on) => context! { enable_thinking => on, ..base },
            None => base,
        };
        match tmpl.render_captured_to(ctx, &mut out) {
            Ok(_) => String::from_utf8(out.buf).map_err(|_| "the output is not UTF-8".into()),
            Err(e) => Err(describe(&e, self.limit)),
        }
    }
}

/// A clear message for a render error.
fn describe(e: &JinjaError, limit: usize) -> String {
    match e.kind() {
        ErrorKind::OutOfFuel => format!(
            "the template ran too long and was stopped after {FUEL} steps (it loops too much \
             or forever)"
        ),
        ErrorKind::WriteFailure => {
            format!("the template's output grew past {limit} bytes and was stopped")
        }
        _ => {
            // The innermost cause says most (an include's error wraps the real one).
            let mut msg = e.to_string();
            let mut cause = std::error::Error::source(e);
            while let Some(c) = cause {
                msg = format!("{msg}: {c}");
                cause = c.source();
            }
            msg
        }
    }
}

/// Output that refuses to grow past a limit (minijinja reports it as a write failure).
struct LimitedWriter {
    buf: Vec<u8>,
    limit: usize,
}

impl Write for LimitedWriter {
    fn write(&mut self, data: &[u8]) -> std::io::Result<usize> {
        if self.buf.len() + data.len() > self.limit {
            return Err(std::io::Error::other("template output limit"));
        }
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

fn compile(source: &str) -> std::result::Result<Arc<Environment<'static>>, String> {
    if source.len() > MAX_TEMPLATE_BYTES {
        return Err(format!(
            "the template is {} bytes, more than {MAX_TEMPLATE_BYTES}",
            source.len()
        ));
    }
    let mut env = Environment::new();
    minijinja_contrib::add_to_environment(&mut env);
    env.set_fuel(Some(FUEL));
    env.set_recursion_limit(RECURSION_LIMIT);
    env.set_unknown_method_callback(bounded_methods);
    env.add_function(
        "raise_exception",
        |msg: String| -> std::result::Result<String, JinjaError> {
            Err(JinjaError::new(ErrorKind::InvalidOperation, msg))
        },
    );
    add_bounded_filters(&mut env);
    env.add_template_owned("chat", source.to_owned())
        .map_err(|e| format!("{e:#}"))?;
    Ok(Arc::new(env))
}

type Jinja<T> = std::result::Result<T, JinjaError>;

fn refuse(what: String) -> JinjaError {
    JinjaError::new(
        ErrorKind::InvalidOperation,
        format!("{what} (chat templates are limited)"),
    )
}

/// A sequence (or string) a filter is about to consume must be at most [`MAX_ITEMS`] long;
/// `[0] * 10**12` has a length but no memory yet.
fn guard_items(v: &Value) -> Jinja<()> {
    match v.len() {
        Some(n) if n > MAX_ITEMS => Err(refuse(format!(
            "a sequence of {n} items, more than {MAX_ITEMS}"
        ))),
        _ => Ok(()),
    }
}

fn guard_width(what: &str, width: usize) -> Jinja<()> {
    if width > MAX_WIDTH {
        return Err(refuse(format!("{what} {width}, more than {MAX_WIDTH}")));
    }
    Ok(())
}

fn guard_bytes(what: &str, bytes: usize) -> Jinja<()> {
    if bytes > MAX_VALUE_BYTES {
        return Err(refuse(format!(
            "{what} of {bytes} bytes, more than {MAX_VALUE_BYTES}"
        )));
    }
    Ok(())
}

/// Widths and precisions in printf (`%10.3f`) and `str.format` (`{:>10}`) specifications.
fn guard_format_spec(fmt: &str) -> Jinja<()> {
    let b = fmt.as_bytes();
    let mut i = 0;
    while i < b.len() {
        match b[i] {
            b'%' => {
                i += 1;
                while i < b.len() && b"#0- +".contains(&b[i]) {
                    i += 1;
                }
                if b.get(i) == Some(&b'*') {
                    return Err(refuse("a width taken from the arguments ('*')".into()));
                }
                i = guard_number(b, i)?;
                if b.get(i) == Some(&b'.') {
                    i = guard_number(b, i + 1)?;
                }
            }
            b'{' => {
                let end = b[i..]
                    .iter()
                    .position(|&c| c == b'}')
                    .map_or(b.len(), |e| i + e);
                let mut j = i;
                while j < end {
                    j = if b[j].is_ascii_digit() {
                        guard_number(b, j)?
                    } else {
                        j + 1
                    };
                }
                i = end;
            }
            _ => i += 1,
        }
    }
    Ok(())
}

/// Skip the digits at `i`, refusing a number above [`MAX_WIDTH`]; returns the index after them.
fn guard_number(b: &[u8], mut i: usize) -> Jinja<usize> {
    let mut n: u64 = 0;
    while let Some(d) = b.get(i).filter(|c| c.is_ascii_digit()) {
        n = n.saturating_mul(10).saturating_add(u64::from(d - b'0'));
        i += 1;
    }
    guard_width(
        "a format width or precision of",
        usize::try_from(n).unwrap_or(usize::MAX),
    )?;
    Ok(i)
}

/// Length of `s.replace(from, to)`, computed before building it.
fn replaced_len(s: &str, from: &str, to: &str) -> usize {
    let hits = if from.is_empty() {
        s.chars().count() + 1
    } else {
        s.matches(from).count()
    };
    (s.len() - hits * from.len().min(s.len())).saturating_add(hits.saturating_mul(to.len()))
}

/// Filters that take a size or consume a sequence, checked first, then minijinja's own.
fn add_bounded_filters(env: &mut Environment<'static>) {
    use minijinja::filters as f;
    env.add_filter(
        "indent",
        |v: StringInput<'_>,
         width: Option<usize>,
         first: Option<bool>,
         blank: Option<bool>,
         kw: Kwargs| {
            let w = match width {
                Some(w) => Some(w),
                None => kw.peek::<Option<usize>>("width")?,
            };
            guard_width("an indent of", w.unwrap_or(0))?;
            guard_bytes("an indented text", v.as_str().len().saturating_mul(2))?;
            f::indent(v, width, first, blank, kw)
        },
    );
    env.add_filter("tojson", |v: &Value, indent: Option<Value>, kw: Kwargs| {
        let i = match &indent {
            Some(i) => Some(i.clone()),
            None => kw.peek::<Option<Value>>("indent")?,
        };
        if let Some(n) = i.as_ref().and_then(|i| i.as_usize()) {
            guard_width("a JSON indent of", n)?;
        }
        guard_items(v)?;
        f::tojson(v, indent, kw)
    });
    env.add_filter("format", |state: &State, fmt: &Value, args: Rest<Value>| {
        guard_format_spec(fmt.as_str().unwrap_or_default())?;
        f::format(state, fmt, args)
    });
    env.add_filter(
        "replace",
        |state: &State, v: StringInput<'_>, from: StringInput<'_>, to: StringInput<'_>| {
            guard_bytes(
                "a replaced text",
                replaced_len(v.as_str(), from.as_str(), to.as_str()),
            )?;
            f::replace(state, v, from, to)
        },
    );
    env.add_filter(
        "join",
        |state: &State, v: &Value, joiner: Option<StringInput<'_>>| {
            guard_items(v)?;
            let sep = joiner.as_ref().map_or(0, |j| j.as_str().len());
            guard_bytes("a joined text", v.len().unwrap_or(0).saturating_mul(sep))?;
            f::join(state, v, joiner)
        },
    );
    env.add_filter(
        "batch",
        |state: &State, v: Value, count: usize, fill: Option<Value>| {
            guard_items(&v)?;
            if count > MAX_ITEMS {
                return Err(refuse(format!("a batch of {count} items")));
            }
            f::batch(state, v, count, fill)
        },
    );
    env.add_filter(
        "slice",
        |state: &State, v: Value, count: usize, fill: Option<Value>| {
            guard_items(&v)?;
            if count > MAX_ITEMS {
                return Err(refuse(format!("{count} slices")));
            }
            f::slice(state, v, count, fill)
        },
    );
    env.add_filter("reverse", |v: &Value| {
        guard_items(v)?;
        f::reverse(v)
    });
    env.add_filter("sort", |state: &State, v: Value, kw: Kwargs| {
        guard_items(&v)?;
        f::sort(state, v, kw)
    });
    env.add_filter("list", |state: &State, v: Value| {
        guard_items(&v)?;
        f::list(state, v)
    });
    env.add_filter("unique", |state: &State, v: Value, kw: Kwargs| {
        guard_items(&v)?;
        f::unique(state, v, kw)
    });
    env.add_filter("map", |state: &State, v: Value, args: Rest<Value>| {
        guard_items(&v)?;
        f::map(state, v, args)
    });
    env.add_filter(
        "select",
        |state: &State, v: Value, test: Option<std::borrow::Cow<'_, str>>, args: Rest<Value>| {
            guard_items(&v)?;
            f::select(state, v, test, args)
        },
    );
    env.add_filter(
        "reject",
        |state: &State, v: Value, test: Option<std::borrow::Cow<'_, str>>, args: Rest<Value>| {
            guard_items(&v)?;
            f::reject(state, v, test, args)
        },
    );
    env.add_filter(
        "selectattr",
        |state: &State,
         v: Value,
         attr: std::borrow::Cow<'_, str>,
         test: Option<std::borrow::Cow<'_, str>>,
         args: Rest<Value>| {
            guard_items(&v)?;
            f::selectattr(state, v, attr, test, args)
        },
    );
    env.add_filter(
        "rejectattr",
        |state: &State,
         v: Value,
         attr: std::borrow::Cow<'_, str>,
         test: Option<std::borrow::Cow<'_, str>>,
         args: Rest<Value>| {
            guard_items(&v)?;
            f::rejectattr(state, v, attr, test, args)
        },
    );
    env.add_filter("groupby", |v: Value, attr: Option<&str>, kw: Kwargs| {
        guard_items(&v)?;
        f::groupby(v, attr, kw)
    });
    env.add_filter("sum", |state: &State, v: Value| {
        guard_items(&v)?;
        f::sum(state, v)
    });
    env.add_filter("min", |state: &State, v: Value| {
        guard_items(&v)?;
        f::min(state, v)
    });
    env.add_filter("max", |state: &State, v: Value| {
        guard_items(&v)?;
        f::max(state, v)
    });
    env.add_filter("last", |v: Value| {
        guard_items(&v)?;
        f::last(v)
    });
    env.add_filter("string", |state: &State, v: &Value| {
        guard_items(v)?;
        f::string(state, v)
    });
    env.add_filter("pprint", |v: &Value| {
        guard_items(v)?;
        Ok(f::pprint(v))
    });
}

/// Python string and dict methods (minijinja-contrib's), with the size-taking ones checked.
fn bounded_methods(state: &State, value: &Value, method: &str, args: &[Value]) -> Jinja<Value> {
    if let Some(s) = value.as_str() {
        match method {
            "format" => guard_format_spec(s)?,
            "replace" => {
                let arg = |i: usize| args.get(i).and_then(|a| a.as_str()).unwrap_or_default();
                guard_bytes("a replaced text", replaced_len(s, arg(0), arg(1)))?;
            }
            "join" => {
                if let Some(items) = args.first() {
                    guard_items(items)?;
                    guard_bytes(
                        "a joined text",
                        items.len().unwrap_or(0).saturating_mul(s.len()),
                    )?;
                }
            }
            "center" | "ljust" | "rjust" | "zfill" | "expandtabs" => {
                if let Some(n) = args.first().and_then(|a| a.as_usize()) {
                    guard_width("a width of", n)?;
                }
            }
            _ => {}
        }
    }
    minijinja_contrib::pycompat::unknown_method_callback(state, value, method, args)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn render(src: &str) -> Result<String> {
        ChatTemplate::new(src, "<s>", "</s>")?.render(&[Message::new("user", "hi")])
    }

    fn err(src: &str) -> String {
        match render(src) {
            Err(EngineError::Template(m)) => m,
            Err(e) => panic!("wrong error for {src}: {e}"),
            Ok(out) => panic!("{src} rendered {} bytes", out.len()),
        }
    }

    #[test]
    fn a_normal_template_renders() {
        let out = render(
            "{% for m in messages %}<|{{ m.role }}|>{{ m.content | trim }}\n{% endfor %}\
             {{ '  x'.strip() }}{{ 'a-b'.replace('-', '+') }}{{ ', '.join(['p', 'q']) }}\
             {{ [3, 1, 2] | sort | join(',') }}{{ 'x' | indent(2) }}{{ {'a': 1} | tojson }}",
        )
        .expect("render");
        assert_eq!(out, "<|user|>hi\nxa+bp, q1,2,3x{\"a\":1}");
    }

    #[test]
    fn loops_run_out_of_fuel() {
        let m =
            err("{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}");
        assert!(m.contains("ran too long"), "{m}");
        let m = err("{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}");
        assert!(m.contains("recursion"), "{m}");
        let m = err("{% include 'chat' %}");
        assert!(m.contains("recursion"), "{m}");
    }

    #[test]
    fn size_taking_filters_and_methods_are_bounded() {
        for src in [
            "{{ ' ' * 10**12 }}",
            "{{ range(10**12) | length }}",
            "{{ 'x' | indent(10**12) }}",
            "{{ 'x' | indent(width=10**12) }}",
            "{{ {'a': 1} | tojson(indent=10**12) }}",
            "{{ {'a': 1} | tojson(10**12) }}",
            "{{ '%01000000000000d' | format(1) }}",
            "{{ '%.1000000000000f' | format(1.5) }}",
            "{{ '{:>1000000000000}'.format('x') }}",
            "{{ 'x'.center(10**12) }}",
            "{{ ([1] * 10**12) | list | length }}",
            "{{ ([1] * 10**12) | join(',') }}",
            "{{ [1] | batch(10**12) | list }}",
            "{{ [1] | slice(10**12) | list }}",
            "{{ ('x' * 1000000) | replace('x', 'yyyyyyyyyy') }}",
            "{{ ('x' * 1000000).replace('x', 'yyyyyyyyyy') }}",
            "{{ ('x' * 1000) | replace('', 'y' * 1000000) }}",
            "{{ ('-' * 1000000).join(range(1000)) }}",
        ] {
            let m = err(src);
            // Each is refused by a bound, not by some other error.
            let bounded = ["limited", "too large", "too many", "more than"];
            assert!(bounded.iter().any(|b| m.contains(b)), "{src}: {m}");
        }
    }

    #[test]
    fn a_thousand_message_conversation_fits_the_fuel() {
        // The default model's template (about 23 steps of fuel per message).
        let src = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}\
                   {{ '<|im_start|>system\nYou are a helpful AI assistant<|im_end|>\n' }}{% endif %}\
                   {{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}\
                   {% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}";
        let t = ChatTemplate::new(src, "", "").expect("compile");
        let msgs: Vec<Message> = (0..1000)
            .map(|i| Message::new(if i % 2 == 0 { "user" } else { "assistant" }, "hello there"))
            .collect();
        let out = t.render(&msgs).expect("1,000 messages render");
        assert_eq!(out.matches("<|im_start|>").count(), 1002);
    }

    #[test]
    fn output_is_bounded() {
        let m = err("{% for i in range(100000) %}{{ 'x' * 1000 }}{% endfor %}");
        assert!(m.contains("output grew past"), "{m}");
    }

    #[test]
    fn broken_and_oversized_templates_are_kept_as_errors() {
        let t = ChatTemplate::new("{% for %}", "", "").expect("never fails");
        assert!(
            t.error().is_some_and(|e| e.contains("syntax")),
            "{:?}",
            t.error()
        );
        assert!(matches!(t.render(&[]), Err(EngineError::Template(_))));
        let big = "x".repeat(MAX_TEMPLATE_BYTES + 1);
        let t = ChatTemplate::new(&big, "", "").expect("never fails");
        assert!(t.error().is_some_and(|e| e.contains("bytes")));
    }

    #[test]
    fn raise_exception_is_a_template_error() {
        let m = err("{{ raise_exception('only user and assistant roles are supported') }}");
        assert!(m.contains("only user and assistant"), "{m}");
    }

    #[test]
    fn format_spec_scanner() {
        assert!(guard_format_spec("%05d %s %-10.3f {} {:>8} {0:.2f}").is_ok());
        assert!(guard_format_spec("%99999d").is_err());
        assert!(guard_format_spec("%.99999f").is_err());
        assert!(guard_format_spec("%*d").is_err());
        assert!(guard_format_spec("{:99999}").is_err());
        assert!(guard_format_spec("year 2024: %s").is_ok());
    }
}
