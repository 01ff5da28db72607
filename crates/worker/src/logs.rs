//! A sandbox's log: everything its processes write to stdout and stderr, collected per
//! invocation, with Lambda's `START`/`END`/`REPORT` lines around it.
//!
//! One task per sandbox reads the pipe continuously (so a chatty function never blocks
//! on a full pipe) into a buffer. When an invocation ends, [`LogTap::take`] first drains
//! whatever is already in the pipe — output written before the runtime posted its answer
//! is guaranteed to be there — and then hands back the invocation's bytes.

use std::fmt::Write as _;
use std::io::Read;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::unix::pipe;
use tokio::sync::{mpsc, oneshot};

/// At most this much of one invocation's output is kept (the rest is counted, not kept).
const MAX_KEPT: usize = 256 * 1024;
/// `X-Amz-Log-Result` carries the last 4 KB of the log, as in Lambda.
pub const TAIL_BYTES: usize = 4096;

#[derive(Default)]
struct Buffer {
    bytes: Vec<u8>,
    dropped: usize,
}

impl Buffer {
    fn push(&mut self, data: &[u8]) {
        let room = MAX_KEPT.saturating_sub(self.bytes.len());
        let keep = data.len().min(room);
        self.bytes.extend_from_slice(&data[..keep]);
        self.dropped += data.len() - keep;
    }
}

/// The reading end of a sandbox's output pipe.
pub struct LogTap {
    buffer: Arc<Mutex<Buffer>>,
    drain: mpsc::Sender<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for LogTap {
    fn drop(&mut self) {
        self.task.abort();
    }
}

impl LogTap {
    /// Start reading `output` (the read end of the sandbox's stdout/stderr pipe).
    pub fn start(output: std::fs::File) -> std::io::Result<LogTap> {
        // A drain must ask the kernel, not tokio's readiness cache, so it reads through a
        // duplicate of the descriptor (`pipe::Receiver` makes the shared file description
        // non-blocking for both).
        let direct = output.try_clone()?;
        let receiver = pipe::Receiver::from_file(output)?;
        let buffer = Arc::new(Mutex::new(Buffer::default()));
        let (drain, mut drain_rx) = mpsc::channel::<oneshot::Sender<()>>(4);
        let task_buffer = buffer.clone();
        let task = tokio::spawn(async move {
            let mut chunk = vec![0u8; 16 * 1024];
            loop {
                tokio::select! {
                    ready = receiver.readable() => {
                        let open = ready.is_ok()
                            && read_available(|b| receiver.try_read(b), &mut chunk, &task_buffer);
                        if !open {
                            break;
                        }
                    }
                    request = drain_rx.recv() => {
                        let Some(done) = request else { break };
                        read_available(|b| (&direct).read(b), &mut chunk, &task_buffer);
                        let _ = done.send(());
                    }
                }
            }
            // The pipe closed: answer drain requests until the tap is dropped.
            while let Some(done) = drain_rx.recv().await {
                let _ = done.send(());
            }
        });
        Ok(LogTap {
            buffer,
            drain,
            task,
        })
    }

    /// Everything written since the last call, after draining the pipe.
    pub async fn take(&self) -> Vec<u8> {
        let (done, wait) = oneshot::channel();
        if self.drain.send(done).await.is_ok() {
            let _ = tokio::time::timeout(Duration::from_millis(100), wait).await;
        }
        let mut buffer = self.buffer.lock().unwrap_or_else(|e| e.into_inner());
        let mut bytes = std::mem::take(&mut buffer.bytes);
        if buffer.dropped > 0 {
            bytes.extend_from_slice(
                format!("[ember: {} bytes of output not kept]\n", buffer.dropped).as_bytes(),
            );
            buffer.dropped = 0;
        }
        bytes
    }
}

/// Read until the pipe would block. Returns false at end of file or on error.
fn read_available(
    mut read: impl FnMut(&mut [u8]) -> std::io::Result<usize>,
    chunk: &mut [u8],
    buffer: &Mutex<Buffer>,
) -> bool {
    loop {
        match read(chunk) {
            Ok(0) => return false,
            Ok(n) => buffer
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(_) => return false,
        }
    }
}

/// The figures of Lambda's `REPORT` line.
#[derive(Debug, Clone, Copy)]
pub struct Report {
    pub duration: Duration,
    pub memory_size_mb: u32,
    pub max_memory_used_mb: u64,
    /// Only when this invocation ran the function's init (a cold start).
    pub init_duration: Option<Duration>,
    /// Only for events that came through a queue.
    pub event_latency: Option<EventLatency>,
}

/// How long a queued event took to reach its handler.
#[derive(Debug, Clone, Copy)]
pub struct EventLatency {
    /// From the poller receiving the message.
    pub poll_to_handler: Duration,
    /// From the message being sent (millisecond resolution, as SentTimestamp).
    pub send_to_handler: Duration,
}

/// The whole log of one invocation, as Lambda writes it.
pub fn invocation_log(request_id: &str, version: &str, output: &[u8], report: &Report) -> String {
    let mut log = format!("START RequestId: {request_id} Version: {version}\n");
    log.push_str(&String::from_utf8_lossy(output));
    if !log.ends_with('\n') {
        log.push('\n');
    }
    let ms = report.duration.as_secs_f64() * 1000.0;
    let _ = writeln!(log, "END RequestId: {request_id}");
    let _ = write!(
        log,
        "REPORT RequestId: {request_id}\tDuration: {ms:.2} ms\tBilled Duration: {} ms\t\
         Memory Size: {} MB\tMax Memory Used: {} MB",
        ms.ceil().max(1.0) as u64,
        report.memory_size_mb,
        report.max_memory_used_mb,
    );
    if let Some(init) = report.init_duration {
        let _ = write!(
            log,
            "\tInit Duration: {:.2} ms",
            init.as_secs_f64() * 1000.0
        );
    }
    if let Some(e) = report.event_latency {
        let _ = write!(
            log,
            "\tPoll To Handler: {:.3} ms\tSend To Handler: {} ms",
            e.poll_to_handler.as_secs_f64() * 1000.0,
            e.send_to_handler.as_millis()
        );
    }
    log.push('\n');
    log
}

/// The last [`TAIL_BYTES`] of a log, cut at a character boundary.
pub fn tail(log: &str) -> &str {
    if log.len() <= TAIL_BYTES {
        return log;
    }
    let mut start = log.len() - TAIL_BYTES;
    while !log.is_char_boundary(start) {
        start += 1;
    }
    &log[start..]
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    #[tokio::test]
    async fn collects_output_per_invocation() {
        let (read, write) = std::io::pipe().unwrap();
        let tap = LogTap::start(std::fs::File::from(std::os::fd::OwnedFd::from(read))).unwrap();
        let mut write = std::fs::File::from(std::os::fd::OwnedFd::from(write));
        write.write_all(b"first\n").unwrap();
        assert_eq!(tap.take().await, b"first\n");
        // A blocking writer on its own thread, as a sandbox is: the tap must keep reading.
        let writer = std::thread::spawn(move || {
            write.write_all(&vec![b'x'; 300 * 1024]).unwrap();
            write
        });
        let write = tokio::task::spawn_blocking(move || writer.join().unwrap())
            .await
            .unwrap();
        let big = tap.take().await;
        assert!(big.len() <= MAX_KEPT + 64);
        assert!(String::from_utf8_lossy(&big).contains("bytes of output not kept"));
        drop(write);
        assert!(tap.take().await.is_empty());
    }

    #[test]
    fn report_lines() {
        let log = invocation_log(
            "id-1",
            "$LATEST",
            b"hello",
            &Report {
                duration: Duration::from_micros(1500),
                memory_size_mb: 128,
                max_memory_used_mb: 20,
                init_duration: Some(Duration::from_millis(12)),
                event_latency: None,
            },
        );
        assert_eq!(
            log,
            "START RequestId: id-1 Version: $LATEST\nhello\nEND RequestId: id-1\n\
             REPORT RequestId: id-1\tDuration: 1.50 ms\tBilled Duration: 2 ms\tMemory Size: 128 MB\t\
             Max Memory Used: 20 MB\tInit Duration: 12.00 ms\n"
        );
        let queued = invocation_log(
            "id-2",
            "$LATEST",
            b"",
            &Report {
                duration: Duration::from_micros(1500),
                memory_size_mb: 128,
                max_memory_used_mb: 20,
                init_duration: None,
                event_latency: Some(EventLatency {
                    poll_to_handler: Duration::from_micros(85),
                    send_to_handler: Duration::from_millis(3),
                }),
            },
        );
        assert!(
            queued.ends_with("\tPoll To Handler: 0.085 ms\tSend To Handler: 3 ms\n"),
            "{queued}"
        );
        let long = "é".repeat(5000);
        assert!(tail(&long).len() <= TAIL_BYTES);
    }
}
