//! The atomic-write helper under real failures: a child process killed with SIGKILL in the
//! middle of a large write, and a child whose writes fail in the kernel (a file-size limit makes
//! `write(2)` return EFBIG, as a full disk returns ENOSPC). Both leave the old file intact.
//!
//! The children are this test binary itself, started with an environment variable that turns
//! the `child_*` tests from no-ops into the writers.

use std::io::{BufRead, BufReader, Write};
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use thinkscope_engine::atomic::{self, AtomicFile, TEMP_PREFIX};

const CHILD_ENV: &str = "THINKSCOPE_ATOMIC_CHILD";
const OLD: &[u8] = b"{\"version\":1,\"the previous session\":true}\n";

fn temps(dir: &Path) -> Vec<std::path::PathBuf> {
    std::fs::read_dir(dir)
        .expect("dir")
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with(TEMP_PREFIX))
        .map(|e| e.path())
        .collect()
}

/// Child side of the kill test: writes 1 MiB, says so, then keeps writing slowly.
#[test]
fn child_slow_writer() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    if !path.ends_with("slow.json") {
        return;
    }
    let mut f = AtomicFile::create(Path::new(&path)).expect("create");
    let chunk = vec![b'n'; 1 << 20];
    f.write_all(&chunk).expect("write");
    f.flush().expect("flush");
    println!("WRITING");
    std::io::stdout().flush().expect("stdout");
    for _ in 0..600 {
        f.write_all(&chunk).expect("write");
        f.flush().expect("flush");
        std::thread::sleep(Duration::from_millis(100));
    }
    f.commit().expect("commit");
}

#[test]
fn kill_9_during_a_save_leaves_the_old_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("slow.json");
    atomic::write(&path, OLD).expect("old version");
    let mut child = Command::new(std::env::current_exe().expect("exe"))
        .args([
            "child_slow_writer",
            "--exact",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD_ENV, &path)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn child");
    let stdout = child.stdout.take().expect("stdout");
    let mut started = false;
    for line in BufReader::new(stdout).lines() {
        if line.expect("line").contains("WRITING") {
            started = true;
            break;
        }
    }
    assert!(started, "the child never started writing");
    // The child is between writes of a multi-megabyte file: kill it there (SIGKILL on Unix).
    std::thread::sleep(Duration::from_millis(150));
    child.kill().expect("kill");
    let status = child.wait().expect("wait");
    assert!(!status.success(), "the child was killed, not finished");

    assert_eq!(std::fs::read(&path).expect("read"), OLD, "old file intact");
    let left = temps(dir.path());
    assert_eq!(left.len(), 1, "the killed writer's temporary file is there");
    let partial = std::fs::metadata(&left[0]).expect("temp").len();
    assert!(partial >= 1 << 20, "the child had written {partial} bytes");

    // The next save works, and stale temporary files of dead processes can be swept.
    atomic::write(&path, b"new").expect("save again");
    assert_eq!(std::fs::read(&path).expect("read"), b"new");
    #[cfg(target_os = "linux")]
    {
        atomic::remove_stale_temps(dir.path());
        assert!(
            temps(dir.path()).is_empty(),
            "the dead writer's temp is swept"
        );
    }
}

/// Child side of the write-error test: runs under `ulimit -f`, so the kernel refuses the write.
#[test]
fn child_write_fails_in_the_kernel() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    if !path.ends_with("limited.json") {
        return;
    }
    let path = Path::new(&path);
    let big = vec![b'z'; 4 << 20];
    let err = atomic::write(path, &big).expect_err("the write must fail");
    let msg = err.to_string();
    println!("ERROR: {msg}");
    assert!(msg.contains("limited.json"), "{msg}");
    assert_eq!(std::fs::read(path).expect("read"), OLD, "old file intact");
    let dir = path.parent().expect("dir");
    assert!(temps(dir).is_empty(), "the temporary file is removed");
}

#[cfg(unix)]
#[test]
fn a_write_error_from_the_kernel_leaves_the_old_file() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("limited.json");
    atomic::write(&path, OLD).expect("old version");
    // SIGXFSZ ignored (inherited through exec), so the oversized write returns EFBIG instead of
    // killing the process; the limit is a few KiB, far below the 4 MiB the child writes.
    let out = Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 8 && exec \"$0\" child_write_fails_in_the_kernel --exact --nocapture --test-threads=1")
        .arg(std::env::current_exe().expect("exe"))
        .env(CHILD_ENV, &path)
        .output()
        .expect("run child");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "child failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        stdout.contains("ERROR:") && stdout.contains("too large"),
        "the child saw the kernel's error: {stdout}"
    );
    assert_eq!(std::fs::read(&path).expect("read"), OLD);
    assert!(temps(dir.path()).is_empty());
}
