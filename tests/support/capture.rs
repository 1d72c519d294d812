//! N3: captures `tracing` events so that tests can assert what the product narrated.
//!
//! One global subscriber routes each event to the capture running on the emitting thread. (A
//! scoped `with_default` subscriber per test is not enough: tracing caches each call site's
//! interest process-wide, so a test thread without a subscriber can switch a call site off for
//! the others.)
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, Once};

use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

#[derive(Debug, Clone)]
pub struct Captured {
    pub level: Level,
    pub fields: BTreeMap<String, String>,
}

impl Captured {
    pub fn field(&self, name: &str) -> Option<&str> {
        self.fields.get(name).map(String::as_str)
    }
}

type Sink = Arc<Mutex<Vec<Captured>>>;

thread_local! {
    static ACTIVE: RefCell<Option<Sink>> = const { RefCell::new(None) };
}

#[derive(Clone, Default)]
pub struct Capture {
    events: Sink,
}

struct Router;

struct Fields<'a>(&'a mut BTreeMap<String, String>);

impl Visit for Fields<'_> {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.0.insert(field.name().to_string(), format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.0.insert(field.name().to_string(), value.to_string());
    }
}

impl<S: Subscriber> Layer<S> for Router {
    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        ACTIVE.with(|active| {
            if let Some(sink) = active.borrow().as_ref() {
                let mut fields = BTreeMap::new();
                event.record(&mut Fields(&mut fields));
                sink.lock().unwrap().push(Captured { level: *event.metadata().level(), fields });
            }
        });
    }
}

impl Capture {
    /// Runs `body` with this thread's events captured.
    pub fn run<T>(&self, body: impl FnOnce() -> T) -> T {
        static INSTALL: Once = Once::new();
        INSTALL.call_once(|| {
            tracing::subscriber::set_global_default(tracing_subscriber::registry().with(Router))
                .expect("no other global subscriber in a test binary");
        });
        ACTIVE.with(|active| *active.borrow_mut() = Some(Arc::clone(&self.events)));
        let result = body();
        ACTIVE.with(|active| *active.borrow_mut() = None);
        result
    }

    pub fn events(&self) -> Vec<Captured> {
        self.events.lock().unwrap().clone()
    }

    /// Events whose `action` field is `action`.
    pub fn with_action(&self, action: &str) -> Vec<Captured> {
        self.events().into_iter().filter(|e| e.field("action") == Some(action)).collect()
    }
}
