//! An accepted message and how the debugging server shows it (smtpd's `DebuggingServer`).

use std::io::{self, Write};
use std::net::IpAddr;

/// The first and last line printed around each message.
pub const BEGIN: &str = "---------- MESSAGE FOLLOWS ----------";
/// See [`BEGIN`].
pub const END: &str = "------------ END MESSAGE ------------";

/// A message the session accepted: smtpd's `process_message` arguments.
#[derive(Debug, PartialEq, Eq)]
pub struct Message {
    /// The client's address (smtpd's `peer`; only its IP is shown).
    pub peer: IpAddr,
    /// The `MAIL FROM` address (`"<>"` for the null path).
    pub mail_from: String,
    /// Every `RCPT TO` address, in order.
    pub rcpt_tos: Vec<String>,
    /// The `MAIL` parameters, upper-cased (`SIZE=49`), smtpd's `mail_options`. Not printed in
    /// the block (see [`Message::write_to`]); the server logs them.
    pub mail_options: Vec<String>,
    /// The message after dot-unstuffing, its lines joined by `\n` (not `\r\n`), as smtpd's
    /// `received_data`.
    pub data: Vec<u8>,
}

impl Message {
    /// Writes the message as `DebuggingServer.process_message` prints it: the markers, and
    /// between them the lines of the message with an `X-Peer: IP` header added before the
    /// first empty line (the end of the headers), and nothing else.
    ///
    /// smtpd also prints `mail options: ['SIZE=49']` (a Python list) between the markers when
    /// the client gave `MAIL` parameters, so what stands between the markers was not the
    /// message. Here the block is the message; the parameters are in the server's `message
    /// accepted` log event (on stderr with `RUST_LOG=smtp_server=info`).
    ///
    /// smtpd prints each line as a Python bytes literal (`b'Subject: hi'`) unless it decodes
    /// the data; here the lines are written as they are, byte for byte, so that what a client
    /// sent can be compared with what is shown (smtpd's `decode_data=True` form, without its
    /// UTF-8 requirement). A message that is not UTF-8 is written unchanged too.
    pub fn write_to(&self, out: &mut impl Write) -> io::Result<()> {
        writeln!(out, "{BEGIN}")?;
        if !self.data.is_empty() {
            let mut in_headers = true;
            for line in self.data.split(|&b| b == b'\n') {
                if in_headers && line.is_empty() {
                    writeln!(out, "X-Peer: {}", self.peer)?;
                    in_headers = false;
                }
                out.write_all(line)?;
                out.write_all(b"\n")?;
            }
        }
        writeln!(out, "{END}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn printed(data: &[u8], mail_options: &[&str]) -> String {
        let message = Message {
            peer: "127.0.0.1".parse().unwrap(),
            mail_from: "a@b".into(),
            rcpt_tos: vec!["c@d".into()],
            mail_options: mail_options.iter().map(|s| s.to_string()).collect(),
            data: data.to_vec(),
        };
        let mut out = Vec::new();
        message.write_to(&mut out).unwrap();
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn headers_get_x_peer_and_parameters_stay_out() {
        assert_eq!(
            printed(
                b"From: a\nSubject: hi\n\nbody\n.dot",
                &["SIZE=30", "BODY=8BITMIME"]
            ),
            format!("{BEGIN}\nFrom: a\nSubject: hi\nX-Peer: 127.0.0.1\n\nbody\n.dot\n{END}\n")
        );
    }

    #[test]
    fn bytes_that_are_not_utf8_pass_unchanged() {
        let message = Message {
            peer: "::1".parse().unwrap(),
            mail_from: "<>".into(),
            rcpt_tos: vec!["c@d".into()],
            mail_options: vec![],
            data: b"X: \xff\n\n\x00\xfe\r".to_vec(),
        };
        let mut out = Vec::new();
        message.write_to(&mut out).unwrap();
        let expected = [
            format!("{BEGIN}\n").as_bytes(),
            b"X: \xff\nX-Peer: ::1\n\n\x00\xfe\r\n",
            format!("{END}\n").as_bytes(),
        ]
        .concat();
        assert_eq!(out, expected);
    }

    #[test]
    fn no_blank_line_no_x_peer_and_empty_message() {
        assert_eq!(
            printed(b"just text", &[]),
            format!("{BEGIN}\njust text\n{END}\n")
        );
        assert_eq!(printed(b"", &[]), format!("{BEGIN}\n{END}\n"));
    }
}
