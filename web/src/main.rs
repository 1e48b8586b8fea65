//! The web app's entry point (Trunk builds this binary to WASM); the app lives in the library.

fn main() {
    web::start();
}
