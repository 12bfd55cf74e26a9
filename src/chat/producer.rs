//! [`Producer`]: output made on demand, asynchat's producer protocol.

use bytes::Bytes;

/// A source of output that makes its bytes when the socket can take them:
/// [`Chat::push_with_producer`](crate::chat::Chat::push_with_producer).
///
/// `more` is called each time the chat's output queue reaches this producer and the socket is
/// writable; an empty `Bytes` means the producer is exhausted and is dropped. Unlike asynchat,
/// which finds a producer by catching `TypeError` from slicing it, this is a trait: nothing masks
/// a producer's own errors.
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
