//! Derives for scenario code: `Label` (a message's or timer's name in the trace) and `Holds`
//! (read a node enum's variant by its type), so neither is written out by hand.

use proc_macro::TokenStream;
use proc_macro2::TokenStream as Tokens;
use quote::quote;
use syn::{parse_macro_input, Data, DeriveInput, Error, Expr, Fields, Lit, Meta};

/// `#[derive(Label)]` on an enum: each variant's label is its name in kebab case
/// (`RetryAfter` → `retry-after`), or the string given by `#[label = "…"]` on the variant.
/// Labels name trace entries and colour messages, and they are part of the run's hash.
#[proc_macro_derive(Label, attributes(label))]
pub fn derive_label(input: TokenStream) -> TokenStream {
    let ast = parse_macro_input!(input as DeriveInput);
    expand_label(&ast).unwrap_or_else(Error::into_compile_error).into()
}

fn expand_label(ast: &DeriveInput) -> syn::Result<Tokens> {
    let Data::Enum(e) = &ast.data else {
        return Err(Error::new_spanned(&ast.ident, "Label is derived for enums (messages and timers)"));
    };
    let name = &ast.ident;
    let (impl_g, ty_g, where_g) = ast.generics.split_for_impl();
    let mut arms = Vec::new();
    for v in &e.variants {
        let mut label = kebab(&v.ident.to_string());
        for a in v.attrs.iter().filter(|a| a.path().is_ident("label")) {
            let Meta::NameValue(nv) = &a.meta else {
                return Err(Error::new_spanned(a, "write #[label = \"name\"]"));
            };
            match &nv.value {
                Expr::Lit(l) => match &l.lit {
                    Lit::Str(s) => label = s.value(),
                    other => return Err(Error::new_spanned(other, "the label is a string")),
                },
                other => return Err(Error::new_spanned(other, "the label is a string")),
            }
        }
        let ident = &v.ident;
        // `{ .. }` matches unit, tuple and struct variants alike.
        arms.push(quote! { Self::#ident { .. } => #label, });
    }
    Ok(quote! {
        impl #impl_g ::faultline_core::Label for #name #ty_g #where_g {
            fn label(&self) -> &'static str {
                match self { #(#arms)* }
            }
        }
    })
}

/// `RetryAfter` → `retry-after`, `HTTP2Ping` → `http2-ping`.
fn kebab(ident: &str) -> String {
    let chars: Vec<char> = ident.chars().collect();
    let mut out = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if c.is_uppercase() {
            let prev_lower = i > 0 && (chars[i - 1].is_lowercase() || chars[i - 1].is_ascii_digit());
            let next_lower = chars.get(i + 1).is_some_and(|n| n.is_lowercase());
            let prev_upper = i > 0 && chars[i - 1].is_uppercase();
            if i > 0 && (prev_lower || (prev_upper && next_lower)) {
                out.push('-');
            }
            out.extend(c.to_lowercase());
        } else {
            out.push(c);
        }
    }
    out
}

/// `#[derive(Holds)]` on a node enum: for each variant holding one value (`Server(Server)`),
/// `impl Holds<Server> for TheEnum`, so checks read `w.node::<Server>(id)` and iterate
/// `w.all::<Server>()` instead of matching and writing `unreachable!()`.
#[proc_macro_derive(Holds)]
pub fn derive_holds(input: TokenStream) -> TokenStream {
    let ast = parse_macro_input!(input as DeriveInput);
    expand_holds(&ast).unwrap_or_else(Error::into_compile_error).into()
}

fn expand_holds(ast: &DeriveInput) -> syn::Result<Tokens> {
    let Data::Enum(e) = &ast.data else {
        return Err(Error::new_spanned(&ast.ident, "Holds is derived for node enums"));
    };
    let name = &ast.ident;
    let (impl_g, ty_g, where_g) = ast.generics.split_for_impl();
    let mut impls = Vec::new();
    for v in &e.variants {
        let Fields::Unnamed(f) = &v.fields else { continue };
        if f.unnamed.len() != 1 {
            continue;
        }
        let ty = &f.unnamed[0].ty;
        let ident = &v.ident;
        impls.push(quote! {
            impl #impl_g ::faultline_core::Holds<#ty> for #name #ty_g #where_g {
                fn held(&self) -> Option<&#ty> {
                    match self { Self::#ident(x) => Some(x), #[allow(unreachable_patterns)] _ => None }
                }
            }
        });
    }
    Ok(quote! { #(#impls)* })
}

#[cfg(test)]
mod tests {
    use super::kebab;

    #[test]
    fn variant_names_become_kebab_case() {
        for (from, to) in [
            ("Request", "request"),
            ("RetryAfter", "retry-after"),
            ("HTTPRequest", "http-request"),
            ("Http2Ping", "http2-ping"),
            ("A", "a"),
            ("GetThenSet", "get-then-set"),
        ] {
            assert_eq!(kebab(from), to);
        }
    }
}
