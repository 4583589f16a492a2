//! Typed per-connection values: what a handler keeps with a connection between events.
//!
//! Owns the attribute map only; it knows nothing of connections or handlers.

use std::any::{Any, TypeId};
use std::fmt;

/// Typed per-connection values, one per type: what Spring keeps in
/// `session.getAttributes()`. Set them in `on_open` (a user id from the token, say) and
/// read them in later events.
#[derive(Default)]
pub struct Attributes {
    // A few entries at most in practice: a vector beats a hash map. Boxed and created on
    // first insert, so a connection without attributes pays one pointer for them.
    // The box is the point: 8 bytes per connection instead of a `Vec`'s 24.
    #[allow(clippy::box_collection)]
    entries: Option<Box<Vec<Entry>>>,
}

/// One attribute: its type and its value.
type Entry = (TypeId, Box<dyn Any + Send>);

impl fmt::Debug for Attributes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Attributes")
            .field("len", &self.entries.as_ref().map_or(0, |e| e.len()))
            .finish()
    }
}

impl Attributes {
    /// Stores `value`, returning the previous value of the same type.
    pub fn insert<T: Any + Send>(&mut self, value: T) -> Option<T> {
        let id = TypeId::of::<T>();
        let old = self.remove::<T>();
        self.entries
            .get_or_insert_with(Default::default)
            .push((id, Box::new(value)));
        old
    }

    /// The value of type `T`, if set.
    pub fn get<T: Any + Send>(&self) -> Option<&T> {
        let id = TypeId::of::<T>();
        self.entries
            .as_ref()?
            .iter()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| v.downcast_ref())
    }

    /// The value of type `T`, mutably.
    pub fn get_mut<T: Any + Send>(&mut self) -> Option<&mut T> {
        let id = TypeId::of::<T>();
        self.entries
            .as_mut()?
            .iter_mut()
            .find(|(t, _)| *t == id)
            .and_then(|(_, v)| v.downcast_mut())
    }

    /// Removes and returns the value of type `T`.
    pub fn remove<T: Any + Send>(&mut self) -> Option<T> {
        let id = TypeId::of::<T>();
        let entries = self.entries.as_mut()?;
        let pos = entries.iter().position(|(t, _)| *t == id)?;
        let (_, v) = entries.swap_remove(pos);
        if entries.is_empty() {
            self.entries = None;
        }
        v.downcast().ok().map(|b| *b)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn attributes_by_type() {
        let mut a = Attributes::default();
        assert_eq!(a.get::<u32>(), None);
        assert_eq!(a.insert(7u32), None);
        assert_eq!(a.insert(String::from("x")), None);
        assert_eq!(a.insert(8u32), Some(7));
        *a.get_mut::<u32>().unwrap() += 1;
        assert_eq!(a.get::<u32>(), Some(&9));
        assert_eq!(a.remove::<String>(), Some("x".into()));
        assert_eq!(a.remove::<u32>(), Some(9));
        assert!(a.entries.is_none());
    }
}
