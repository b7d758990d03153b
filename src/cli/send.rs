//! `callmetrics send`: streams JSON-lines events from a file or stdin to the event socket, for
//! scripts and dialplan hooks, printing the daemon's one reply per line as it arrives.

use std::io::{self, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::process::ExitCode;

use serde::Deserialize;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWriteExt, BufReader, BufWriter};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::UnixStream;

use super::error::CliError;
use crate::control::client::ClientError;

/// What a `send` run did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SendSummary {
    /// Lines sent, each answered by one reply.
    pub sent: u64,
    /// Replies without `"ok":true`.
    pub refused: u64,
}

impl SendSummary {
    /// 0 when every event was accepted, 1 when any was refused.
    #[must_use]
    pub fn exit_code(&self) -> u8 {
        u8::from(self.refused > 0)
    }
}

/// Sends the events of `input` (a file; stdin when `None` or `-`) to `event_socket`.
pub async fn send(event_socket: &Path, input: Option<&Path>) -> Result<ExitCode, CliError> {
    let summary = match input.filter(|p| *p != Path::new("-")) {
        None => {
            // tokio's own stdin needs a feature this crate does not enable; a duplicate of fd 0
            // read through tokio::fs does the same job (blocking reads on tokio's pool).
            let stdin_err = |source| CliError::Input {
                path: "standard input".into(),
                source,
            };
            let fd = io::stdin()
                .as_fd()
                .try_clone_to_owned()
                .map_err(stdin_err)?;
            let stdin = tokio::fs::File::from_std(std::fs::File::from(fd));
            send_to(event_socket, stdin, "standard input", &mut io::stdout()).await?
        }
        Some(path) => {
            let name = path.display().to_string();
            let file = tokio::fs::File::open(path)
                .await
                .map_err(|source| CliError::Input {
                    path: name.clone(),
                    source,
                })?;
            send_to(event_socket, file, &name, &mut io::stdout()).await?
        }
    };
    if summary.refused > 0 {
        eprintln!("{} of {} events refused", summary.refused, summary.sent);
    }
    Ok(ExitCode::from(summary.exit_code()))
}

/// Streams the non-empty lines of `input` to `event_socket` from one task while this one copies
/// each reply line to `out`; returns once input has ended and every line has its reply.
/// `input_name` labels read errors.
pub async fn send_to<R>(
    event_socket: &Path,
    input: R,
    input_name: &str,
    out: &mut impl Write,
) -> Result<SendSummary, CliError>
where
    R: AsyncRead + Unpin + Send + 'static,
{
    let stream = UnixStream::connect(event_socket)
        .await
        .map_err(|e| ClientError::connect(event_socket, e))?;
    let (rd, wr) = stream.into_split();
    let mut writer = tokio::spawn(write_lines(input, wr, input_name.to_string()));
    let mut replies = BufReader::new(rd);
    let mut line = Vec::new();
    let mut got = 0u64;
    let mut refused = 0u64;
    // Set once the writer has finished; it holds the write half open until this returns.
    let mut written: Option<Written> = None;
    let closed_early = loop {
        if written.as_ref().is_some_and(|(sent, ..)| got >= *sent) {
            break false;
        }
        tokio::select! {
            // Cancel-safe: a partly read line stays in `line` for the next call.
            n = replies.read_until(b'\n', &mut line) => {
                let n = n.map_err(|e| {
                    CliError::EventSocket(format!("reading replies from {}: {e}", event_socket.display()))
                })?;
                if n == 0 {
                    break true;
                }
                got += 1;
                if !reply_ok(&line) {
                    refused += 1;
                }
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                out.write_all(&line)?;
                // Flush when no further reply is already here, so output keeps pace without a
                // system call per line.
                if replies.buffer().is_empty() {
                    out.flush()?;
                }
                line.clear();
            }
            done = &mut writer, if written.is_none() => written = Some(joined(done)),
        }
    };
    out.flush()?;
    if closed_early {
        // The writer keeps its half open, so an end of stream means the daemon hung up, unless it
        // did so after answering everything.
        if written.is_none() && writer.is_finished() {
            written = Some(joined((&mut writer).await));
        }
        match &written {
            Some((sent, ..)) if got >= *sent => {}
            _ => {
                writer.abort();
                let of = written.map_or(String::new(), |(sent, ..)| format!(" of {sent}"));
                return Err(CliError::EventSocket(format!(
                    "the daemon closed the event socket {} after answering {got}{of} events (is it stopping? see its log)",
                    event_socket.display()
                )));
            }
        }
    }
    match written {
        Some((_, Err(e), _)) => Err(e),
        _ => Ok(SendSummary { sent: got, refused }),
    }
}

/// What the writer task ended with: lines sent, why it stopped early if it did, and the write
/// half, kept so the socket is not shut down for writing before every reply is read.
type Written = (u64, Result<(), CliError>, Option<OwnedWriteHalf>);

fn joined(done: Result<Written, tokio::task::JoinError>) -> Written {
    done.unwrap_or_else(|e| {
        let err = CliError::EventSocket(format!("the sending task failed: {e}"));
        (0, Err(err), None)
    })
}

/// Whether a reply line says `"ok":true`; anything else (including garbage) counts as refused.
fn reply_ok(line: &[u8]) -> bool {
    #[derive(Deserialize)]
    struct Reply {
        ok: bool,
    }
    serde_json::from_slice::<Reply>(line).is_ok_and(|r| r.ok)
}

/// Writes every non-blank line of `input` to the socket; returns how many, why it stopped early if
/// it did, and the write half, which it hands back rather than drops so the socket stays open
/// until every reply is read.
async fn write_lines<R>(input: R, wr: OwnedWriteHalf, input_name: String) -> Written
where
    R: AsyncRead + Unpin,
{
    let mut input = BufReader::new(input);
    let mut sock = BufWriter::new(wr);
    let mut sent = 0u64;
    let sock_err =
        |e: io::Error| CliError::EventSocket(format!("writing events to the daemon: {e}"));
    let res = async {
        let mut line = Vec::new();
        loop {
            line.clear();
            let n = input
                .read_until(b'\n', &mut line)
                .await
                .map_err(|source| CliError::Input {
                    path: input_name.clone(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            if line.iter().all(u8::is_ascii_whitespace) {
                // Blank lines carry no event and the daemon need not answer them: sending
                // one could leave this side waiting for a reply that never comes.
                continue;
            }
            // The first byte of a connection picks its framing: `{`, `[` or whitespace means JSON
            // lines. A first line that starts otherwise (garbage) must still be read as JSON.
            if sent == 0 && !matches!(line[0], b'{' | b'[') && !line[0].is_ascii_whitespace() {
                sock.write_all(b" ").await.map_err(sock_err)?;
            }
            if !line.ends_with(b"\n") {
                line.push(b'\n');
            }
            sock.write_all(&line).await.map_err(sock_err)?;
            sent += 1;
            // Flush when no more input is ready: a file goes out in large writes, a slow producer
            // (a hook, a person typing) line by line.
            if input.buffer().is_empty() {
                sock.flush().await.map_err(sock_err)?;
            }
        }
        sock.flush().await.map_err(sock_err)
    }
    .await;
    (sent, res, Some(sock.into_inner()))
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;
    use std::sync::{Arc, Mutex};
    use std::time::Duration;

    use tokio::io::AsyncWriteExt;
    use tokio::net::UnixListener;

    use super::*;

    /// A stand-in event socket: one reply per non-blank line, `{"ok":false,...}` for lines with
    /// "bad"; it hangs up after `hang_up_after` replies when set. Records every line it got.
    struct FakeDaemon {
        _dir: tempfile::TempDir,
        sock: PathBuf,
        lines: Arc<Mutex<Vec<String>>>,
    }

    fn fake_daemon(hang_up_after: Option<usize>) -> FakeDaemon {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("events.sock");
        let listener = UnixListener::bind(&sock).unwrap();
        let lines = Arc::new(Mutex::new(Vec::new()));
        let seen = lines.clone();
        tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let seen = seen.clone();
                tokio::spawn(async move {
                    let (rd, mut wr) = stream.into_split();
                    let mut rd = BufReader::new(rd).lines();
                    let mut replied = 0;
                    // Reads one line and answers it before reading the next, as the daemon may:
                    // a client that wrote everything before reading would deadlock here.
                    while let Ok(Some(line)) = rd.next_line().await {
                        if line.trim().is_empty() {
                            continue;
                        }
                        let reply = if line.contains("bad") {
                            "{\"ok\":false,\"error\":\"bad event\"}\n"
                        } else {
                            "{\"ok\":true}\n"
                        };
                        seen.lock().unwrap().push(line);
                        wr.write_all(reply.as_bytes()).await.unwrap();
                        replied += 1;
                        if Some(replied) == hang_up_after {
                            return;
                        }
                    }
                });
            }
        });
        FakeDaemon {
            _dir: dir,
            sock,
            lines,
        }
    }

    async fn run(d: &FakeDaemon, input: &str) -> (Result<SendSummary, CliError>, String) {
        let mut out = Vec::new();
        let input = std::io::Cursor::new(input.as_bytes().to_vec());
        let res = tokio::time::timeout(
            Duration::from_secs(20),
            send_to(&d.sock, input, "events.jsonl", &mut out),
        )
        .await
        .expect("send finishes");
        (res, String::from_utf8(out).unwrap())
    }

    #[tokio::test]
    async fn every_line_is_sent_and_every_reply_printed() {
        let d = fake_daemon(None);
        let input =
            "{\"type\":\"start\",\"call_id\":\"a\"}\n\n   \n{\"type\":\"end\",\"call_id\":\"a\"}";
        let (res, out) = run(&d, input).await;
        let summary = res.unwrap();
        assert_eq!(
            summary,
            SendSummary {
                sent: 2,
                refused: 0
            }
        );
        assert_eq!(summary.exit_code(), 0);
        assert_eq!(out, "{\"ok\":true}\n{\"ok\":true}\n");
        assert_eq!(
            *d.lines.lock().unwrap(),
            [
                "{\"type\":\"start\",\"call_id\":\"a\"}",
                "{\"type\":\"end\",\"call_id\":\"a\"}"
            ]
        );
    }

    #[tokio::test]
    async fn refused_events_exit_1_with_their_replies_in_order() {
        let d = fake_daemon(None);
        let (res, out) = run(&d, "{\"n\":1}\n{\"bad\":2}\nnot json at all\n{\"n\":4}\n").await;
        let summary = res.unwrap();
        assert_eq!(
            summary,
            SendSummary {
                sent: 4,
                refused: 1
            }
        );
        assert_eq!(summary.exit_code(), 1);
        let replies: Vec<&str> = out.lines().collect();
        assert_eq!(
            replies,
            [
                "{\"ok\":true}",
                "{\"ok\":false,\"error\":\"bad event\"}",
                "{\"ok\":true}",
                "{\"ok\":true}"
            ]
        );
    }

    #[tokio::test]
    async fn a_first_line_of_garbage_still_selects_json_lines() {
        let d = fake_daemon(None);
        let (res, _) = run(&d, "oops\n[{\"n\":1}]\n").await;
        assert_eq!(
            res.unwrap(),
            SendSummary {
                sent: 2,
                refused: 0
            }
        );
        // A leading space keeps the daemon from reading MessagePack frames; the line stays
        // invalid JSON, so the daemon still answers it with the error.
        assert_eq!(*d.lines.lock().unwrap(), [" oops", "[{\"n\":1}]"]);
    }

    #[tokio::test]
    async fn many_lines_are_pipelined_without_deadlock() {
        let d = fake_daemon(None);
        // Far more than socket buffers hold in either direction.
        let n = 50_000;
        use std::fmt::Write as _;
        let pad = "x".repeat(40);
        let input: String = (0..n).fold(String::new(), |mut s, i| {
            let _ = writeln!(s, "{{\"call_id\":\"c{i}\",\"pad\":\"{pad}\"}}");
            s
        });
        let (res, out) = run(&d, &input).await;
        assert_eq!(
            res.unwrap(),
            SendSummary {
                sent: n,
                refused: 0
            }
        );
        assert_eq!(out.lines().count() as u64, n);
        assert_eq!(d.lines.lock().unwrap().len() as u64, n);
    }

    #[tokio::test]
    async fn an_unreachable_socket_exits_2_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let sock = dir.path().join("events.sock");
        let err = send_to(
            &sock,
            std::io::Cursor::new(Vec::new()),
            "-",
            &mut Vec::new(),
        )
        .await
        .unwrap_err();
        let msg = err.to_string();
        assert_eq!(err.exit_code(), 2);
        assert!(!msg.contains('\n'), "{msg}");
        assert!(
            msg.contains(&format!("at {}: No such file or directory", sock.display())),
            "{msg}"
        );
    }

    #[tokio::test]
    async fn a_daemon_that_hangs_up_early_exits_2() {
        let d = fake_daemon(Some(1));
        let (res, out) = run(&d, "{\"n\":1}\n{\"n\":2}\n{\"n\":3}\n").await;
        let err = res.unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("after answering 1"), "{err}");
        assert_eq!(out, "{\"ok\":true}\n");
    }

    #[tokio::test]
    async fn a_missing_input_file_is_named() {
        let d = fake_daemon(None);
        let missing = d.sock.with_file_name("nope.jsonl");
        let err = send(&d.sock, Some(&missing)).await.unwrap_err();
        assert!(
            err.to_string()
                .starts_with(&format!("cannot read {}", missing.display())),
            "{err}"
        );
        assert_eq!(err.exit_code(), 2);
    }

    #[test]
    fn only_ok_true_counts_as_accepted() {
        assert!(reply_ok(b"{\"ok\":true}\n"));
        assert!(!reply_ok(b"{\"ok\":false,\"error\":\"x\"}"));
        assert!(!reply_ok(b"{\"items\":[]}"));
        assert!(!reply_ok(b"garbage"));
    }
}
