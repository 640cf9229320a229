//! A value replaced whole at run time and read as snapshots: what makes the config-derived
//! parts of the server reloadable ([`server::reload`](crate::server::reload)).
//!
//! [`Live`] holds the current value; a reload [`store`](Live::store)s a new one in a
//! single atomic swap. Readers never see half of each: they take an `Arc` snapshot and keep
//! it for their unit of work (an SMTP session keeps the one it started with, a delivery
//! attempt takes one), while the old value lives on until its last snapshot is dropped.
//! A stage that only needs one part of the value gets a [`View`] of that part, so it
//! depends on its own type, not on the whole server's.

use std::sync::Arc;

use arc_swap::ArcSwap;

/// The current value; cheap to clone (clones share it).
pub struct Live<T> {
    current: Arc<ArcSwap<T>>,
}

impl<T> Clone for Live<T> {
    fn clone(&self) -> Self {
        Live {
            current: self.current.clone(),
        }
    }
}

impl<T: Send + Sync + 'static> Live<T> {
    pub fn new(value: T) -> Live<T> {
        Live {
            current: Arc::new(ArcSwap::from_pointee(value)),
        }
    }

    /// A snapshot of the current value.
    pub fn load(&self) -> Arc<T> {
        self.current.load_full()
    }

    /// Replaces the value; snapshots already taken keep the old one.
    pub fn store(&self, value: T) {
        self.current.store(Arc::new(value));
    }

    /// The `part` of whatever value is current when [`View::get`] is called.
    pub fn view<P: Send + Sync + 'static>(&self, part: fn(&T) -> &Arc<P>) -> View<P> {
        let live = self.clone();
        View {
            get: Arc::new(move || part(&live.current.load()).clone()),
        }
    }
}

/// One part of a [`Live`] value, read as snapshots; cheap to clone.
pub struct View<P> {
    get: Arc<dyn Fn() -> Arc<P> + Send + Sync>,
}

impl<P> Clone for View<P> {
    fn clone(&self) -> Self {
        View {
            get: self.get.clone(),
        }
    }
}

impl<P: Send + Sync + 'static> View<P> {
    /// A view that never changes (a stage run on its own, as tests do).
    pub fn fixed(value: P) -> View<P> {
        let value = Arc::new(value);
        View {
            get: Arc::new(move || value.clone()),
        }
    }

    /// A snapshot of the part as it is now.
    pub fn get(&self) -> Arc<P> {
        (self.get)()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Whole {
        name: Arc<String>,
    }

    #[test]
    fn snapshots_keep_their_value_and_views_follow_the_store() {
        let live = Live::new(Whole {
            name: Arc::new("old".into()),
        });
        let view = live.view(|w| &w.name);
        let before = live.load();
        let part_before = view.get();
        live.store(Whole {
            name: Arc::new("new".into()),
        });
        assert_eq!(*before.name, "old");
        assert_eq!(*part_before, "old");
        assert_eq!(*view.get(), "new");
        assert_eq!(*live.clone().load().name, "new");
        assert_eq!(*View::fixed(7).get(), 7);
    }
}
