//! Pipe throughput: `examples/file_cat` (two file channels on a map) against `cat`, in the same
//! run.
//!
//! Each round pipes the same N bytes through each program: this process writes them from
//! memory into the child's stdin (a pipe) on one thread and reads its stdout (a pipe) on
//! another, counting, until the child exits. A round's time runs from the spawn to the last
//! byte and the exit. Rounds alternate file_cat, cat, file_cat, …; the report gives each
//! round, the medians in MB/s (10^6 bytes per second) and the ratio file_cat / cat. Every run
//! is bounded: a child still running after `DEADLINE` is killed and the bench fails.
//!
//! ```text
//! cargo bench --bench file_cat
//! FILE_CAT_MIB=64 FILE_CAT_ROUNDS=11 cargo bench --bench file_cat
//! ```

mod support;

use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use support::{env, example, median};

const DEADLINE: Duration = Duration::from_secs(120);
const CHUNK: usize = 64 * 1024;

/// Pipes `data` through `program`; returns the seconds it took.
fn round(program: &Path, data: &Arc<Vec<u8>>) -> io::Result<f64> {
    let started = Instant::now();
    let mut child = Command::new(program)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()?;
    let mut stdin = child.stdin.take().expect("piped");
    let mut stdout = child.stdout.take().expect("piped");
    let input = Arc::clone(data);
    let writer = std::thread::spawn(move || -> io::Result<()> {
        for chunk in input.chunks(CHUNK) {
            stdin.write_all(chunk)?;
        }
        Ok(())
    });
    let reader = std::thread::spawn(move || -> io::Result<usize> {
        let mut buf = vec![0; CHUNK];
        let mut total = 0;
        loop {
            match stdout.read(&mut buf)? {
                0 => return Ok(total),
                n => total += n,
            }
        }
    });
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        if started.elapsed() > DEADLINE {
            let _ = child.kill();
            let _ = child.wait();
            return Err(io::Error::other(format!(
                "{} did not finish within {DEADLINE:?}",
                program.display()
            )));
        }
        std::thread::sleep(Duration::from_millis(1));
    };
    writer.join().expect("writer")?;
    let copied = reader.join().expect("reader")?;
    let elapsed = started.elapsed().as_secs_f64();
    if !status.success() || copied != data.len() {
        return Err(io::Error::other(format!(
            "{}: {status}, copied {copied} of {} bytes",
            program.display(),
            data.len()
        )));
    }
    Ok(elapsed)
}

fn main() -> io::Result<()> {
    let mib = env("FILE_CAT_MIB", 256).max(1);
    let rounds = env("FILE_CAT_ROUNDS", 9).max(1);
    let file_cat = example("file_cat")?;
    let cat = PathBuf::from("cat");
    let data: Arc<Vec<u8>> = Arc::new((0..mib << 20).map(|i| (i % 251) as u8).collect());
    let megabytes = data.len() as f64 / 1e6;
    println!("file_cat vs cat: {mib} MiB through pipes, {rounds} rounds each, interleaved");
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for r in 0..rounds {
        let a = megabytes / round(&file_cat, &data)?;
        let c = megabytes / round(&cat, &data)?;
        println!("  round {r}: file_cat {a:.0} MB/s, cat {c:.0} MB/s");
        ours.push(a);
        theirs.push(c);
    }
    let (a, c) = (median(ours), median(theirs));
    println!(
        "  median: file_cat {a:.0} MB/s, cat {c:.0} MB/s, ratio {:.3}",
        a / c
    );
    Ok(())
}
