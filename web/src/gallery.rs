//! The gallery: every registered scenario, grouped by category, with a search box.

use crate::route::scenario_href;
use faultline_core::ScenarioSpec;
use faultline_scenarios::ALL;
use leptos::prelude::*;

/// Whether a scenario's id, title, category, summary or a strategy's name contains `q`,
/// ignoring ASCII case. Not Unicode case: the texts are English, and Unicode's case tables
/// cost the bundle 8 KB gzipped.
fn matches(spec: &ScenarioSpec, q: &str) -> bool {
    let q = q.trim().to_ascii_lowercase();
    q.is_empty()
        || [spec.id(), spec.info.title, spec.info.category, spec.info.summary]
            .iter()
            .any(|t| t.to_ascii_lowercase().contains(&q))
        || spec.strategies.iter().any(|s| s.label.to_ascii_lowercase().contains(&q))
}

#[component]
pub fn Gallery() -> impl IntoView {
    let query = RwSignal::new(String::new());
    let mut categories: Vec<&'static str> = Vec::new();
    for s in ALL {
        if !categories.contains(&s.info.category) {
            categories.push(s.info.category);
        }
    }
    let sections = move || {
        let q = query.get();
        categories
            .iter()
            .filter_map(|cat| {
                let cards: Vec<_> =
                    ALL.iter().filter(|s| s.info.category == *cat && matches(s, &q)).map(|s| card(s)).collect();
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
    let none = move || !ALL.iter().any(|s| matches(s, &query.get()));
    view! {
        <main class="gallery">
            <div class="search">
                <input type="search" placeholder="Search scenarios, strategies, categories…" aria-label="Search scenarios"
                    prop:value=move || query.get()
                    on:input=move |ev| query.set(event_target_value(&ev)) />
                <span class="count">{ALL.len()} " scenarios"</span>
            </div>
            {sections}
            <Show when=none>
                <p class="empty">"No scenario matches “" {move || query.get()} "”."</p>
            </Show>
        </main>
    }
}

fn card(spec: &'static ScenarioSpec) -> impl IntoView {
    let naive = spec.strategies.iter().filter(|s| s.naive).count();
    let fixed = spec.strategies.len() - naive;
    view! {
        <a class="card" href=scenario_href(spec.id(), "")>
            <h3>{spec.info.title}</h3>
            <p class="summary">{spec.info.summary}</p>
            <p class="meta">
                <span class="pill naive">{naive} " naive"</span>
                <span class="pill fixed">{fixed} " fixed"</span>
                <span class="seeds" title="Where this comes from in the seed documents">{spec.info.seeds.join(" · ")}</span>
            </p>
        </a>
    }
}

#[cfg(test)]
mod tests {
    use super::matches;
    use faultline_scenarios::ALL;

    /// `text` with the case of each ASCII letter swapped.
    fn swapped(text: &str) -> String {
        text.chars()
            .map(|c| if c.is_ascii_lowercase() { c.to_ascii_uppercase() } else { c.to_ascii_lowercase() })
            .collect()
    }

    #[test]
    fn search_finds_a_scenario_by_its_id_title_category_or_strategy_in_any_case() {
        for spec in ALL {
            let strategies = spec.strategies.iter().map(|s| s.label);
            for text in [spec.id(), spec.info.title, spec.info.category].into_iter().chain(strategies) {
                assert!(matches(spec, &swapped(text)), "{}: {text:?} in another case", spec.id());
                assert!(matches(spec, &format!("  {text} ")), "{}: {text:?} with spaces around", spec.id());
            }
            assert!(matches(spec, ""), "an empty search shows everything");
            assert!(!matches(spec, "zzz-no-such-thing"));
        }
    }
}
