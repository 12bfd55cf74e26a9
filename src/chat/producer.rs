//! [`Producer`]: output made on demand, asynchat's producer protocol.

use bytes::Bytes;

/// A source of output that makes its bytes when the socket can take them:
/// [`Chat::push_with_producer`](crate::chat::Chat::push_with_producer).
///
/// `more` is called each time the chat's output queue reaches this producer and the socket is
/// writable; an empty `Bytes` means the producer is exhausted and is dropped. Unlike asynchat,
/// which finds a producer by catching `TypeError` from slicing it, this is a trait: nothing masks
/// a producer's own errors.
///
/// Closures, [`Bytes`](https://docs.rs/bytes/1/bytes/struct.Bytes.html) and `Vec<u8>` are producers; [`SimpleProducer`] hands out a buffer in
/// chunks.
///
/// # Example
///
/// A countdown made line by line as the socket takes it, then a buffer in chunks, then the
/// close; native code queues them through [`Map::with`](crate::Map::with):
///
/// ```
/// # #[tokio::main(flavor = "current_thread")] async fn main() -> std::io::Result<()> {
/// use std::io;
/// use asyncore::chat::{AsyncChat, Chat, ChatHandler, Producer, SimpleProducer};
/// use asyncore::{Channel, Map};
/// use bytes::Bytes;
/// use tokio::io::AsyncReadExt;
///
/// struct Countdown(u32);
///
/// impl Producer for Countdown {
///     fn more(&mut self) -> Bytes {
///         if self.0 == 0 {
///             return Bytes::new(); // exhausted
///         }
///         self.0 -= 1;
///         format!("{}\n", self.0 + 1).into()
///     }
/// }
///
/// struct Quiet;
///
/// impl ChatHandler for Quiet {
///     fn found_terminator(&mut self, _: &mut Chat, _: &mut Channel) -> io::Result<()> {
///         Ok(())
///     }
/// }
///
/// let (ours, mut peer) = tokio::net::UnixStream::pair()?;
/// let map = Map::new();
/// let id = map.add(Channel::from_unix(ours), AsyncChat::new(Quiet, b"\n"))?;
/// map.with::<AsyncChat<Quiet>, _>(id, |chat, _| {
///     let chat = chat.chat_mut();
///     chat.push_with_producer(Countdown(3));
///     chat.push_with_producer(SimpleProducer::new("liftoff\n", 3));
///     chat.close_when_done();
/// })?;
/// let mut received = String::new();
/// let (served, read) = tokio::join!(map.run(), peer.read_to_string(&mut received));
/// served?;
/// read?;
/// assert_eq!(received, "3\n2\n1\nliftoff\n");
/// # Ok(()) }
/// ```
pub trait Producer: 'static {
    /// The next chunk, or empty when there is no more.
    fn more(&mut self) -> Bytes;
}

/// A buffer is a producer of itself, all at once (asynchat accepts bytes in
/// `push_with_producer`).
impl Producer for Bytes {
    fn more(&mut self) -> Bytes {
        std::mem::take(self)
    }
}

impl Producer for Vec<u8> {
    fn more(&mut self) -> Bytes {
        std::mem::take(self).into()
    }
}

impl<F: FnMut() -> Bytes + 'static> Producer for F {
    fn more(&mut self) -> Bytes {
        self()
    }
}

/// asynchat's `simple_producer`: a buffer handed out in chunks of at most `buffer_size` bytes
/// (slices, not copies), then empty forever.
///
/// ```
/// use asyncore::chat::{Producer, SimpleProducer};
/// let mut producer = SimpleProducer::new("hello world", 4);
/// assert_eq!(&producer.more()[..], b"hell");
/// assert_eq!(&producer.more()[..], b"o wo");
/// assert_eq!(&producer.more()[..], b"rld");
/// assert!(producer.more().is_empty());
/// ```
#[derive(Debug, Clone)]
pub struct SimpleProducer {
    data: Bytes,
    buffer_size: usize,
}

impl SimpleProducer {
    /// asynchat's default chunk size.
    pub const DEFAULT_BUFFER_SIZE: usize = 512;

    /// A producer of `data` in chunks of `buffer_size` bytes (at least 1).
    pub fn new(data: impl Into<Bytes>, buffer_size: usize) -> SimpleProducer {
        SimpleProducer {
            data: data.into(),
            buffer_size: buffer_size.max(1),
        }
    }
}

impl Producer for SimpleProducer {
    fn more(&mut self) -> Bytes {
        let take = self.data.len().min(self.buffer_size);
        self.data.split_to(take)
    }
}
