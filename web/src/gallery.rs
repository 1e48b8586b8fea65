//! The gallery: every registered scenario, grouped by category, with a search box.

use crate::route::scenario_href;
use leptos::prelude::*;

/// What the gallery shows of a scenario: its simulation code, note and controls arrive
/// with its worker when it is opened.
pub struct Card {
    pub id: &'static str,
    pub title: &'static str,
    pub category: &'static str,
    pub summary: &'static str,
    pub seeds: &'static [&'static str],
    /// Each strategy's label, and whether it is naive.
    pub strategies: &'static [(&'static str, bool)],
}

include!(concat!(env!("OUT_DIR"), "/cards.rs"));

/// Whether a scenario's id, title, category, summary or a strategy's name contains `q`,
/// ignoring ASCII case. Not Unicode case: the texts are English, and Unicode's case tables
/// cost the bundle 8 KB gzipped.
fn matches(card: &Card, q: &str) -> bool {
    let q = q.trim().to_ascii_lowercase();
    q.is_empty()
        || [card.id, card.title, card.category, card.summary].iter().any(|t| t.to_ascii_lowercase().contains(&q))
        || card.strategies.iter().any(|s| s.0.to_ascii_lowercase().contains(&q))
}

#[component]
pub fn Gallery() -> impl IntoView {
    let query = RwSignal::new(String::new());
    let mut categories: Vec<&'static str> = Vec::new();
    for s in CARDS {
        if !categories.contains(&s.category) {
            categories.push(s.category);
        }
    }
    let sections = move || {
        let q = query.get();
        categories
            .iter()
            .filter_map(|cat| {
                let cards: Vec<_> = CARDS.iter().filter(|s| s.category == *cat && matches(s, &q)).map(card).collect();
                (!cards.is_empty()).then(|| {
                    view! {
                        <section class="category">
                            <h2>{*cat}</h2>
                            <div class="cards">{cards}</div>
                        </section>
                    }
                })
            })
            .collect::<Vec<_>>()
    };
    let none = move || !CARDS.iter().any(|s| matches(s, &query.get()));
    view! {
        <main class="gallery">
            <div class="search">
                <input type="search" placeholder="Search scenarios, strategies, categories…" aria-label="Search scenarios"
                    prop:value=move || query.get()
                    on:input=move |ev| query.set(event_target_value(&ev)) />
                <span class="count">{CARDS.len()} " scenarios"</span>
            </div>
            {sections}
            <Show when=none>
                <p class="empty">"No scenario matches “" {move || query.get()} "”."</p>
            </Show>
        </main>
    }
}

fn card(spec: &'static Card) -> impl IntoView {
    let naive = spec.strategies.iter().filter(|s| s.1).count();
    let fixed = spec.strategies.len() - naive;
    view! {
        <a class="card" href=scenario_href(spec.id, "")>
            <h3>{spec.title}</h3>
            <p class="summary">{spec.summary}</p>
            <p class="meta">
                <span class="pill naive">{naive} " naive"</span>
                <span class="pill fixed">{fixed} " fixed"</span>
                <span class="seeds" title="Where this comes from in the seed documents">{spec.seeds.join(" · ")}</span>
            </p>
        </a>
    }
}

#[cfg(test)]
mod tests {
    use super::{matches, CARDS};

    /// `text` with the case of each ASCII letter swapped.
    fn swapped(text: &str) -> String {
        text.chars()
            .map(|c| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
            .collect()
    }

    /// The cards are the registry's, generated when the page is built.
    #[test]
    fn there_is_a_card_for_every_registered_scenario() {
        let ids: Vec<&str> = CARDS.iter().map(|c| c.id).collect();
        let registered: Vec<&str> = faultline_scenarios::ALL.iter().map(|s| s.id()).collect();
        assert_eq!(ids, registered);
        for (card, spec) in CARDS.iter().zip(faultline_scenarios::ALL) {
            assert_eq!((card.title, card.summary, card.seeds), (spec.info.title, spec.info.summary, spec.info.seeds));
            let strategies: Vec<(&str, bool)> = spec.strategies.iter().map(|s| (s.label, s.naive)).collect();
            assert_eq!(card.strategies, &strategies[..]);
        }
    }

    #[test]
    fn search_finds_a_scenario_by_its_id_title_category_or_strategy_in_any_case() {
        for spec in CARDS {
            let strategies = spec.strategies.iter().map(|s| s.0);
            for text in [spec.id, spec.title, spec.category].into_iter().chain(strategies) {
                assert!(matches(spec, &swapped(text)), "{}: {text:?} in another case", spec.id);
                assert!(matches(spec, &format!("  {text} ")), "{}: {text:?} with spaces around", spec.id);
            }
            assert!(matches(spec, ""), "an empty search shows everything");
            assert!(!matches(spec, "zzz-no-such-thing"));
        }
    }
}
