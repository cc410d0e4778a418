//! Which connection an event or a robot's answer is for: its slot in the loop's connection table
//! and a generation that tells it from the earlier connections in the same slot.
//!
//! Slab slots are reused at once, so an event later in the same batch, or the answer to a robot
//! job, may name a slot that now holds someone else; the generation makes such a stale token or
//! ticket match nothing. A token has room for only part of the generation (the key takes its
//! low bits, and fixed tokens sit at the top of the range); a ticket carries all of it.

use mio::Token;

/// Bits of a token that hold the slab key; the generation sits above them.
const KEY_BITS: u32 = 24;
const KEY_MASK: usize = (1 << KEY_BITS) - 1;
/// Generations wrap within the bits above the key, leaving the top bit clear so that no
/// connection's token can equal a fixed token.
const GENERATION_BITS: u32 = usize::BITS - KEY_BITS - 1;
const GENERATION_MASK: u32 = if GENERATION_BITS > 31 {
    u32::MAX
} else {
    (1 << GENERATION_BITS) - 1
};

/// The largest `max_connections` accepted: slab keys must fit in a token's key bits.
pub const MAX_CONNECTIONS_LIMIT: usize = 1 << KEY_BITS;

/// The listening socket's token, outside the range of connections' tokens.
pub(super) const LISTENER: Token = Token(usize::MAX);
/// The waker's token (robot answers are in), outside the range of connections' tokens.
pub(super) const WAKER: Token = Token(usize::MAX - 1);
/// The web listener's token, outside the range of connections' tokens.
pub(super) const WEB_LISTENER: Token = Token(usize::MAX - 2);

/// One connection of one loop.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) struct ConnId {
    /// Its slot in the loop's connection table.
    pub key: usize,
    /// How many connections the loop had accepted before it (wrapping).
    pub generation: u32,
}

impl ConnId {
    /// The token its socket is registered with.
    pub fn token(self) -> Token {
        debug_assert!(self.key < MAX_CONNECTIONS_LIMIT);
        Token(((self.generation & GENERATION_MASK) as usize) << KEY_BITS | self.key)
    }

    /// The slot a connection's token names; whether it is still the same connection there is
    /// for [`named_by`](ConnId::named_by) to say.
    pub fn key_of(token: Token) -> usize {
        token.0 & KEY_MASK
    }

    /// Whether `token` names this connection, as far as a token can tell it apart.
    pub fn named_by(self, token: Token) -> bool {
        self.token() == token
    }

    /// The tag of a robot job asked for this connection, which comes back with the answer.
    pub fn ticket(self) -> u64 {
        u64::from(self.generation) << 32 | self.key as u64
    }

    /// The id of this connection's conversation, for the robot's memory of it: unique among the
    /// server's open connections, whichever loop (of at most 256) holds them.
    pub fn conversation(self, loop_index: usize) -> u64 {
        debug_assert!(self.key < MAX_CONNECTIONS_LIMIT && loop_index < 256);
        u64::from(self.generation) << 32 | (self.key as u64) << 8 | loop_index as u64
    }

    /// The connection a robot job's ticket names.
    pub fn from_ticket(ticket: u64) -> ConnId {
        ConnId {
            key: (ticket & u64::from(u32::MAX)) as usize,
            generation: (ticket >> 32) as u32,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_name_their_connection_and_never_a_fixed_token() {
        for (key, generation) in [(0, 0), (5, 7), (MAX_CONNECTIONS_LIMIT - 1, u32::MAX)] {
            let id = ConnId { key, generation };
            let token = id.token();
            assert_ne!(token, LISTENER);
            assert_ne!(token, WAKER);
            assert_eq!(ConnId::key_of(token), key);
            assert!(id.named_by(token));
        }
    }

    #[test]
    fn a_later_connection_in_the_same_slot_is_not_named_by_an_earlier_token() {
        let earlier = ConnId {
            key: 3,
            generation: 1,
        };
        let later = ConnId {
            key: 3,
            generation: 2,
        };
        assert_ne!(earlier.token(), later.token());
        assert!(!later.named_by(earlier.token()));
    }

    #[test]
    fn tickets_carry_the_whole_generation() {
        let id = ConnId {
            key: MAX_CONNECTIONS_LIMIT - 1,
            generation: u32::MAX,
        };
        assert_eq!(ConnId::from_ticket(id.ticket()), id);
        let wrapped = ConnId {
            key: 9,
            generation: 1 << GENERATION_BITS.min(31),
        };
        assert_eq!(ConnId::from_ticket(wrapped.ticket()), wrapped);
    }
}
