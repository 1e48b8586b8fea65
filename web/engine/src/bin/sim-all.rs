//! The worker module with every scenario: the engine bench (`#/bench/engine`).

fn main() {
    faultline_engine::main(faultline_engine::everything());
}
