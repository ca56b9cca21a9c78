//! Dispatch cost of a handler registered with `#[on]` against the same handler registered as
//! a closure: the macro should add nothing (`cargo bench -p sio-core --bench dispatch`).
//!
//! Besides criterion's two measurements, `interleaved` times both alternately, round after
//! round, and prints the ratio of the medians: on a shared machine the load changes between
//! criterion's separate measurement windows more than the 2% this bench is about.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group};
use serde_json::{Value, json};
use sio_core::__private::EventDispatch;
use sio_core::{Data, Namespace, on};

/// The handler under test: extracts and deserializes two numbers, answers their sum.
#[on("add")]
async fn add(Data((a, b)): Data<(i64, i64)>) -> Result<i64, &'static str> {
    a.checked_add(black_box(b)).ok_or("overflow")
}

/// The same handler, once registered by the macro and once as a closure.
fn dispatchers() -> (EventDispatch, EventDispatch) {
    let with_macro = EventDispatch::new(Namespace::new("/").service(add));
    let with_closure = EventDispatch::new(
        Namespace::new("/").on("add", |Data((a, b)): Data<(i64, i64)>| async move {
            a.checked_add(black_box(b)).ok_or("overflow")
        }),
    );
    (with_macro, with_closure)
}

fn args() -> Vec<Value> {
    vec![json!(1), json!(2)]
}

fn dispatch(c: &mut Criterion) {
    let (with_macro, with_closure) = dispatchers();
    let args = args();
    let mut group = c.benchmark_group("dispatch");
    group.bench_function("closure", |b| {
        b.iter(|| with_closure.dispatch(black_box("add"), args.clone()))
    });
    group.bench_function("macro", |b| {
        b.iter(|| with_macro.dispatch(black_box("add"), args.clone()))
    });
    group.finish();
}

/// Time per dispatch of `n` dispatches.
fn time(dispatcher: &EventDispatch, args: &[Value], n: u32) -> Duration {
    let start = Instant::now();
    for _ in 0..n {
        black_box(dispatcher.dispatch(black_box("add"), args.to_vec()));
    }
    start.elapsed() / n
}

fn median(mut times: Vec<Duration>) -> Duration {
    times.sort();
    times.get(times.len() / 2).copied().unwrap_or_default()
}

/// Alternates short runs of both, so that both see the same machine load.
fn interleaved() {
    let (with_macro, with_closure) = dispatchers();
    let args = args();
    let (mut macro_times, mut closure_times) = (Vec::new(), Vec::new());
    for _ in 0..200 {
        macro_times.push(time(&with_macro, &args, 2_000));
        closure_times.push(time(&with_closure, &args, 2_000));
    }
    let (m, c) = (median(macro_times), median(closure_times));
    println!(
        "interleaved medians: macro {m:?}, closure {c:?}, macro/closure = {:.3}",
        m.as_secs_f64() / c.as_secs_f64()
    );
}

criterion_group!(benches, dispatch);

fn main() {
    benches();
    interleaved();
    Criterion::default().configure_from_args().final_summary();
}
