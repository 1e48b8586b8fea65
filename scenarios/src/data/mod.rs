//! Data and scale: patterns whose trouble grows with fan-out, data size and traffic.

pub mod chunked_upload;
pub mod feed_fanout;
pub mod n_plus_one;
pub mod noisy_neighbor;
pub mod pagination;
pub mod scatter_gather;
pub mod sliding_window_analytics;
pub mod token_revocation;
pub mod url_shortener;
