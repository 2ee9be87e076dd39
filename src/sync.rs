//! `Exclusive`, the lock the sidecar's shared state lives in, shaped so the
//! concurrency rules of ARCHITECTURE.md hold by construction:
//!
//! - the guard never leaves a closure, and the closure is synchronous, so no
//!   lock is ever held across an `.await`;
//! - a thread that holds one `Exclusive` cannot take another (or the same one
//!   again): the second `with` panics, naming both locks, instead of
//!   deadlocking. A handler's panic is answered -32603 and the sidecar goes on;
//!   a deadlock would freeze every client of the workspace.
//!
//! What the closure may not do, no type can check: I/O. Closures here copy or
//! change plain data; anything slow happens after `with` returns.

use std::cell::Cell;
use std::sync::{Mutex, PoisonError};

thread_local! {
    /// The `Exclusive` this thread holds now, if any.
    static HELD: Cell<Option<&'static str>> = const { Cell::new(None) };
}

pub struct Exclusive<T> {
    name: &'static str,
    inner: Mutex<T>,
}

impl<T> Exclusive<T> {
    pub const fn new(name: &'static str, value: T) -> Exclusive<T> {
        Exclusive { name, inner: Mutex::new(value) }
    }

    /// Runs `f` with the value locked. Panics if this thread already holds an `Exclusive`.
    pub fn with<R>(&self, f: impl FnOnce(&mut T) -> R) -> R {
        let _held = Held::enter(self.name);
        let mut guard = self.inner.lock().unwrap_or_else(PoisonError::into_inner);
        f(&mut guard)
    }
}

impl<T: Default> Default for Exclusive<T> {
    fn default() -> Self {
        Exclusive::new(std::any::type_name::<T>(), T::default())
    }
}

/// Marks this thread as holding `name` until dropped (also on unwinding).
struct Held;

impl Held {
    fn enter(name: &'static str) -> Held {
        HELD.with(|held| {
            if let Some(other) = held.get() {
                panic!("lock {name:?} taken while this thread holds {other:?}: locks must not nest");
            }
            held.set(Some(name));
        });
        Held
    }
}

impl Drop for Held {
    fn drop(&mut self) {
        HELD.with(|held| held.set(None));
    }
}

#[cfg(test)]
mod tests {
    use super::Exclusive;

    #[test]
    fn a_value_is_changed_under_the_lock() {
        let counter = Exclusive::new("counter", 0);
        counter.with(|c| *c += 2);
        assert_eq!(counter.with(|c| *c), 2);
    }

    #[test]
    fn nesting_the_same_lock_panics_instead_of_deadlocking() {
        let state = Exclusive::new("state", 1);
        let nested = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| state.with(|_| state.with(|v| *v))));
        let message = nested.unwrap_err().downcast::<String>().unwrap();
        assert!(message.contains("\"state\" taken while this thread holds \"state\""), "{message}");
        // The thread is usable again afterwards, and so is the lock.
        assert_eq!(state.with(|v| *v), 1);
    }

    #[test]
    fn nesting_two_locks_panics() {
        let a = Exclusive::new("a", ());
        let b = Exclusive::new("b", ());
        let nested = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| a.with(|()| b.with(|()| ()))));
        assert!(nested.is_err());
        b.with(|()| ());
    }

    #[test]
    fn other_threads_wait_their_turn() {
        let counter = std::sync::Arc::new(Exclusive::new("counter", 0u32));
        let workers: Vec<_> = (0..4)
            .map(|_| {
                let counter = counter.clone();
                std::thread::spawn(move || (0..1000).for_each(|_| counter.with(|c| *c += 1)))
            })
            .collect();
        workers.into_iter().for_each(|w| w.join().unwrap());
        assert_eq!(counter.with(|c| *c), 4000);
    }
}
