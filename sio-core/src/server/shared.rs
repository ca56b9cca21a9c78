//! One instance of the application per worker, for both of actix-http's entry points: plain
//! requests and upgrade requests ([`upgraded`](super::upgraded)) reach the same `App`, with the
//! same per-worker state.

use std::cell::RefCell;
use std::rc::Rc;

use actix_http::Request;
use actix_service::ServiceFactory;
use futures_util::FutureExt as _;
use futures_util::future::{LocalBoxFuture, Shared};

type Pending<S> = Shared<LocalBoxFuture<'static, Result<Rc<S>, ()>>>;

/// A service factory whose every `new_service` gives the same service, made on the first call.
pub(super) struct SharedApp<F: ServiceFactory<Request, Config = ()>> {
    factory: Rc<F>,
    service: Rc<RefCell<Option<Pending<F::Service>>>>,
}

impl<F: ServiceFactory<Request, Config = ()>> Clone for SharedApp<F> {
    fn clone(&self) -> Self {
        SharedApp {
            factory: self.factory.clone(),
            service: self.service.clone(),
        }
    }
}

impl<F> SharedApp<F>
where
    F: ServiceFactory<Request, Config = ()> + 'static,
    F::InitError: std::fmt::Debug,
{
    pub(super) fn new(factory: F) -> Self {
        SharedApp {
            factory: Rc::new(factory),
            service: Rc::default(),
        }
    }

    /// The application's service, made once.
    pub(super) fn service(&self) -> LocalBoxFuture<'static, Result<Rc<F::Service>, ()>> {
        let pending = self
            .service
            .borrow_mut()
            .get_or_insert_with(|| {
                let made = self.factory.new_service(());
                async move {
                    made.await.map(Rc::new).map_err(|err| {
                        tracing::error!(?err, "the application's service could not be made");
                    })
                }
                .boxed_local()
                .shared()
            })
            .clone();
        pending.boxed_local()
    }
}

impl<F> ServiceFactory<Request> for SharedApp<F>
where
    F: ServiceFactory<Request, Config = ()> + 'static,
    F::InitError: std::fmt::Debug,
{
    type Response = F::Response;
    type Error = F::Error;
    type Config = ();
    type Service = Rc<F::Service>;
    type InitError = ();
    type Future = LocalBoxFuture<'static, Result<Rc<F::Service>, ()>>;

    fn new_service(&self, (): ()) -> Self::Future {
        self.service()
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use actix_web::dev::fn_factory;

    use super::*;

    #[actix_web::test]
    async fn every_new_service_is_the_one_made_first() {
        let made = Rc::new(Cell::new(0));
        let counted = made.clone();
        let shared = SharedApp::new(fn_factory(move || {
            counted.set(counted.get() + 1);
            async {
                Ok::<_, ()>(actix_web::dev::fn_service(|_: Request| async {
                    Ok::<_, ()>(())
                }))
            }
        }));
        let a = shared.new_service(()).await.unwrap();
        let b = shared.clone().new_service(()).await.unwrap();
        assert!(Rc::ptr_eq(&a, &b));
        assert_eq!(made.get(), 1);
    }
}
