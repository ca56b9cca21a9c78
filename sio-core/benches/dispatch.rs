//! Dispatch cost of a handler registered with `#[on]` against the same handler registered as
//! a closure: the macro should add nothing (`cargo bench -p sio-core --bench dispatch`).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use serde_json::{Value, json};
use sio_core::__private::EventDispatch;
use sio_core::{Data, Namespace, on};

/// The handler under test: extracts and deserializes two numbers, answers their sum.
#[on("add")]
async fn add(Data((a, b)): Data<(i64, i64)>) -> Result<i64, &'static str> {
    a.checked_add(black_box(b)).ok_or("overflow")
}

fn dispatch(c: &mut Criterion) {
    let with_macro = EventDispatch::new(Namespace::new("/").service(add));
    let with_closure = EventDispatch::new(
        Namespace::new("/").on("add", |Data((a, b)): Data<(i64, i64)>| async move {
            a.checked_add(black_box(b)).ok_or("overflow")
        }),
    );
    let args: Vec<Value> = vec![json!(1), json!(2)];
    let mut group = c.benchmark_group("dispatch");
    group.bench_function("closure", |b| {
        b.iter(|| with_closure.dispatch(black_box("add"), args.clone()))
    });
    group.bench_function("macro", |b| {
        b.iter(|| with_macro.dispatch(black_box("add"), args.clone()))
    });
    group.finish();
}

criterion_group!(benches, dispatch);
criterion_main!(benches);
