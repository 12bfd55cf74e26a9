//! asynchat's STARTTLS: [`Chat::start_tls`] upgrades a chat's connection in the middle of its
//! conversation, with the chat's input and output handled explicitly.

use std::io;
use std::sync::Arc;

use crate::channel::Channel;
use crate::chat::state::Chat;
use crate::tls::{ClientConfig, ServerConfig, Upgrade};

impl Chat {
    /// Upgrades the chat's connection to TLS at this point of its conversation (a STARTTLS
    /// command, or the reply that accepts one): [`Channel::start_tls`], with the chat's
    /// buffers handled as the upgrade needs them.
    ///
    /// - **Output** queued before the call (the reply that accepts the command, pushed just
    ///   before) goes out in the clear, in order, before the first TLS record; output pushed
    ///   afterwards is encrypted.
    /// - **Input** that waits unparsed is refused: bytes that came after the upgrade command in
    ///   the same read arrived in the clear, and the handler would take them for protected
    ///   input (the STARTTLS command injection). The call then fails with `InvalidData`, and
    ///   nothing changes: returned from `found_terminator`, the error reaches `handle_error`,
    ///   whose default closes the connection (RFC 3207 §4.2 asks a server to discard such
    ///   input or to refuse it; this refuses it). A record collected but not taken
    ///   ([`take_data`](Chat::take_data)) is refused the same way.
    /// - The terminator stays as it is; the handler sets the one the protected conversation
    ///   starts with, and forgets what it learnt in the clear (RFC 3207 §4.2).
    ///
    /// The handshake then runs; [`ChatHandler::handle_tls_ready`](crate::chat::ChatHandler::handle_tls_ready)
    /// tells when it completed, and a failure reaches `handle_error`.
    ///
    /// # Example
    ///
    /// A line server with a STARTTLS command (the reply goes out in the clear, the rest of the
    /// conversation in TLS):
    ///
    /// ```
    /// # #![allow(dead_code)]
    /// use std::io;
    /// use std::sync::Arc;
    /// use asyncore::chat::{Chat, ChatHandler};
    /// use asyncore::tls::ServerConfig;
    /// use asyncore::Channel;
    ///
    /// struct Server { tls: Arc<ServerConfig>, helo: Option<String> }
    ///
    /// impl ChatHandler for Server {
    ///     fn found_terminator(&mut self, chat: &mut Chat, channel: &mut Channel) -> io::Result<()> {
    ///         let line = chat.take_line();
    ///         match &line[..] {
    ///             b"STARTTLS" if !channel.is_tls() => {
    ///                 chat.push_line("220 Ready to start TLS");
    ///                 chat.start_tls_server(channel, self.tls.clone())?;
    ///                 self.helo = None; // what was said in the clear is forgotten
    ///             }
    ///             _ => chat.push_line("250 OK"),
    ///         }
    ///         Ok(())
    ///     }
    /// }
    /// ```
    ///
    /// # Errors
    /// `InvalidData` for unparsed input (above); `InvalidInput` when a
    /// [`close_when_done`](Chat::close_when_done) is queued, and those of
    /// [`Channel::start_tls`] (TLS already on, not a stream connection, closed). The chat and
    /// the channel are then left as they were.
    pub fn start_tls(&mut self, channel: &mut Channel, upgrade: Upgrade) -> io::Result<()> {
        if self.incoming_len() > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "start_tls: a record of {} bytes received in the clear is collected and not \
                     taken; take it (take_data) before the upgrade, or it would join protected input",
                    self.incoming_len()
                ),
            ));
        }
        if self.buffered_input() > 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!(
                    "start_tls: {} bytes arrived in the clear after the upgrade command, before \
                     the TLS handshake; refused, not taken for protected input (a peer must wait \
                     for the reply before it starts TLS; RFC 3207 §4.2)",
                    self.buffered_input()
                ),
            ));
        }
        if self.output_mut().closes() {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "start_tls: close_when_done is queued; the connection is closing",
            ));
        }
        let owed = self.output_mut().drain();
        let mut upgrade = upgrade;
        for piece in &owed {
            upgrade = upgrade.plaintext_first(piece.clone());
        }
        if let Err(e) = channel.start_tls(upgrade) {
            let mut output = self.output_mut();
            for piece in owed {
                output.push(piece);
            }
            return Err(e);
        }
        Ok(())
    }

    /// [`start_tls`](Chat::start_tls) as the server (the reply to a STARTTLS command pushed
    /// just before goes out first, in the clear).
    ///
    /// # Errors
    /// As [`start_tls`](Chat::start_tls).
    pub fn start_tls_server(
        &mut self,
        channel: &mut Channel,
        config: Arc<ServerConfig>,
    ) -> io::Result<()> {
        self.start_tls(channel, Upgrade::server(config))
    }

    /// [`start_tls`](Chat::start_tls) as the client, for `server_name` (once the server
    /// accepted the STARTTLS command).
    ///
    /// # Errors
    /// As [`start_tls`](Chat::start_tls); `InvalidInput` for a bad `server_name`.
    pub fn start_tls_client(
        &mut self,
        channel: &mut Channel,
        config: Arc<ClientConfig>,
        server_name: &str,
    ) -> io::Result<()> {
        self.start_tls(channel, Upgrade::client(config, server_name)?)
    }
}
