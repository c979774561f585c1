//! The gRPC codec of every Tutela service: prost, with smaller buffers than
//! tonic's default. tonic gives each stream an 8 KiB buffer per direction
//! and keeps it for the stream's life; a collector holds three such streams
//! for each of thousands of connected agents (the rules subscription and
//! both directions of the event stream), nearly all of whose messages are a
//! few hundred bytes. A buffer still grows for a larger message (a bundle,
//! a capture).

use std::marker::PhantomData;

use tonic::codec::{BufferSettings, Codec};
use tonic_prost::{ProstDecoder, ProstEncoder};

/// Bytes a stream's encode and decode buffers start with: an
/// acknowledgement, a heartbeat reply or a subscription's small update
/// fits; an event (a few hundred bytes) grows its stream's buffer once.
/// (1 KiB per buffer made every connected agent cost its collector more.)
pub const BUFFER_BYTES: usize = 256;
/// Encoded bytes gathered before they are handed to the transport (tonic's default).
const YIELD_BYTES: usize = 32 * 1024;

fn settings() -> BufferSettings {
    BufferSettings::new(BUFFER_BYTES, YIELD_BYTES)
}

/// Prost encoding with small initial buffers; see the module documentation.
#[derive(Debug, Clone, Copy)]
pub struct LeanCodec<T, U>(PhantomData<(T, U)>);

impl<T, U> Default for LeanCodec<T, U> {
    fn default() -> Self {
        Self(PhantomData)
    }
}

impl<T, U> Codec for LeanCodec<T, U>
where
    T: prost::Message + Send + 'static,
    U: prost::Message + Default + Send + 'static,
{
    type Encode = T;
    type Decode = U;
    type Encoder = ProstEncoder<T>;
    type Decoder = ProstDecoder<U>;

    fn encoder(&mut self) -> Self::Encoder {
        ProstEncoder::new(settings())
    }

    fn decoder(&mut self) -> Self::Decoder {
        ProstDecoder::new(settings())
    }
}
