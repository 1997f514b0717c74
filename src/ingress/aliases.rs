//! MQTT 5 topic aliases towards a client (MQTT 5 3.3.2.3.4): the first `max` distinct topics a
//! connection is sent get an alias each, given with the full topic once; later messages to an
//! aliased topic carry the alias and an empty topic. Topics past the client's maximum always
//! go in full (aliases are never reassigned). One table per connection: aliases do not outlive
//! it, so a resumed session starts afresh.

use std::collections::HashMap;
use std::num::NonZeroU16;

use ntex_bytes::ByteString;

/// The aliases of one connection.
#[derive(Debug, Default)]
pub struct Aliases {
    /// The client's Topic Alias Maximum from its CONNECT (0: none).
    max: u16,
    given: HashMap<ByteString, NonZeroU16>,
}

/// How to write one message's topic.
#[derive(Debug, PartialEq, Eq)]
pub enum AliasUse {
    /// The full topic, no alias.
    Plain,
    /// The full topic and a new alias for it (remember it only once sent: [`Aliases::forget`]).
    Assign(NonZeroU16),
    /// An empty topic and this alias.
    Reuse(NonZeroU16),
}

impl Aliases {
    /// A table for a client that takes up to `max` aliases.
    pub fn new(max: u16) -> Self {
        Self { max, given: HashMap::new() }
    }

    /// How to send `topic` now.
    pub fn pick(&mut self, topic: &ByteString) -> AliasUse {
        if let Some(alias) = self.given.get(topic) {
            return AliasUse::Reuse(*alias);
        }
        match NonZeroU16::new(self.given.len() as u16 + 1) {
            Some(alias) if self.given.len() < usize::from(self.max) => {
                self.given.insert(topic.clone(), alias);
                AliasUse::Assign(alias)
            }
            _ => AliasUse::Plain,
        }
    }

    /// The message that was to assign `topic`'s alias was not sent: the client does not know
    /// the alias, so it must not be used. Only the last assigned alias is given back (a later
    /// assignment would otherwise reuse a number the client may hold for another topic).
    pub fn forget(&mut self, topic: &ByteString, alias: NonZeroU16) {
        if usize::from(alias.get()) == self.given.len() && self.given.get(topic) == Some(&alias) {
            self.given.remove(topic);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aliases_are_given_once_reused_and_never_past_the_maximum() {
        let (a, b, c) = (ByteString::from("t/a"), ByteString::from("t/b"), ByteString::from("t/c"));
        let one = NonZeroU16::new(1).unwrap();
        let two = NonZeroU16::new(2).unwrap();
        let mut t = Aliases::new(2);
        assert_eq!(t.pick(&a), AliasUse::Assign(one));
        assert_eq!(t.pick(&a), AliasUse::Reuse(one));
        assert_eq!(t.pick(&b), AliasUse::Assign(two));
        assert_eq!(t.pick(&c), AliasUse::Plain, "past the client's maximum");
        assert_eq!(t.pick(&b), AliasUse::Reuse(two));
        let mut none = Aliases::new(0);
        assert_eq!(none.pick(&a), AliasUse::Plain);
        assert_eq!(none.pick(&a), AliasUse::Plain);
    }

    #[test]
    fn an_alias_whose_message_was_not_sent_is_given_again() {
        let a = ByteString::from("t/a");
        let mut t = Aliases::new(4);
        let AliasUse::Assign(alias) = t.pick(&a) else { panic!() };
        t.forget(&a, alias);
        assert_eq!(t.pick(&a), AliasUse::Assign(alias), "assigned again with its full topic");
    }
}
