//! deploy/terraform read as Terraform reads it (hcl-edit, of the hcl-rs project), every module
//! and example: each `var.`, `local.`, `module.` and `data.` reference, each reference to a
//! resource of a type declared beside it, and each provider configuration a module call or a
//! resource names, names something declared; each module call gives only
//! variables the module declares and every one it requires, and reads only outputs it
//! declares; each template a module renders exists. Terraform's own checks (fmt, validate, an
//! apply of the local example whose parts check their rendered configs) run in
//! `scripts/terraform.sh`, which needs Terraform; this needs nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use hcl_edit::expr::{Expression, FuncCall, ObjectKey, Traversal, TraversalOperator};
use hcl_edit::structure::{BlockLabel, Body};
use hcl_edit::visit::{Visit, visit_expr};

/// What one directory of `.tf` files declares, and what it refers to.
#[derive(Default, Debug)]
struct Module {
    /// Variables, and whether each has a default (a caller may leave it out).
    variables: BTreeMap<String, bool>,
    locals: BTreeSet<String>,
    outputs: BTreeSet<String>,
    /// Module calls: their source, and the arguments given.
    calls: BTreeMap<String, (String, BTreeSet<String>)>,
    /// Resources, as `type.name`.
    resources: BTreeSet<String>,
    /// Data sources, as `type.name`.
    data: BTreeSet<String>,
    /// Provider configurations declared (`aws`, `aws.r0`), and the providers required.
    providers: BTreeSet<String>,
    required_providers: BTreeSet<String>,
    /// Provider configurations named: by a module call (`providers = { aws = aws.r0 }`: the
    /// call, the callee's name for it, the configuration) or by a resource (`provider =`).
    provider_uses: Vec<(String, Option<String>, String)>,
    refs: Refs,
}

/// References found in expressions: each is the path it starts with (`var.x`,
/// `module.m.o`, `terraform_data.n`), and templates named by `templatefile`.
#[derive(Default, Debug)]
struct Refs {
    paths: BTreeSet<Vec<String>>,
    templates: BTreeSet<String>,
}

impl Visit for Refs {
    fn visit_traversal(&mut self, t: &Traversal) {
        if let Expression::Variable(root) = &t.expr {
            let path = std::iter::once(root.as_str().to_owned())
                .chain(t.operators.iter().map_while(|op| match op.value() {
                    TraversalOperator::GetAttr(a) => Some(a.as_str().to_owned()),
                    _ => None,
                }))
                .take(3)
                .collect();
            self.paths.insert(path);
        }
        hcl_edit::visit::visit_traversal(self, t);
    }

    fn visit_func_call(&mut self, f: &FuncCall) {
        if f.name.name.as_str() == "templatefile"
            && let Some(path) = f.args.iter().next()
        {
            self.templates.insert(path.to_string());
        }
        hcl_edit::visit::visit_func_call(self, f);
    }

    fn visit_expr(&mut self, e: &Expression) {
        visit_expr(self, e);
    }
}

fn label(l: &BlockLabel) -> String {
    match l {
        BlockLabel::Ident(i) => i.as_str().to_owned(),
        BlockLabel::String(s) => s.as_str().to_owned(),
    }
}

/// The string a literal expression holds (a module's `source`).
fn literal(e: &Expression) -> Option<String> {
    match e {
        Expression::String(s) => Some(s.as_str().to_owned()),
        _ => None,
    }
}

fn read_module(dir: &Path) -> Module {
    let mut m = Module::default();
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "tf"))
        .collect();
    files.sort();
    assert!(!files.is_empty(), "{} holds no .tf file", dir.display());
    for file in files {
        let text = std::fs::read_to_string(&file).unwrap();
        let body: Body = hcl_edit::parser::parse_body(&text)
            .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for block in body.blocks() {
            let labels: Vec<String> = block.labels.iter().map(label).collect();
            match (block.ident.as_str(), labels.as_slice()) {
                ("variable", [name]) => {
                    let defaulted = block.body.get_attribute("default").is_some();
                    m.variables.insert(name.clone(), defaulted);
                }
                ("locals", []) => m
                    .locals
                    .extend(block.body.attributes().map(|a| a.key.as_str().to_owned())),
                ("output", [name]) => {
                    m.outputs.insert(name.clone());
                }
                ("provider", [name]) => {
                    let alias = block
                        .body
                        .get_attribute("alias")
                        .and_then(|a| literal(&a.value));
                    m.providers.insert(match alias {
                        Some(alias) => format!("{name}.{alias}"),
                        None => name.clone(),
                    });
                }
                ("data", [kind, name]) => {
                    m.data.insert(format!("{kind}.{name}"));
                }
                ("module", [name]) => {
                    if let Some(a) = block.body.get_attribute("providers") {
                        let Expression::Object(map) = &a.value else {
                            panic!("{}: module {name}: providers is not a map", file.display())
                        };
                        for (key, value) in map.iter() {
                            m.provider_uses.push((
                                format!("module {name}"),
                                Some(match key {
                                    ObjectKey::Ident(i) => i.as_str().to_owned(),
                                    ObjectKey::Expression(e) => e.to_string().trim().to_owned(),
                                }),
                                value.expr().to_string().trim().to_owned(),
                            ));
                        }
                    }
                    let source = block
                        .body
                        .get_attribute("source")
                        .and_then(|a| literal(&a.value))
                        .unwrap_or_else(|| {
                            panic!("{}: module {name} has no source", file.display())
                        });
                    let meta = [
                        "source",
                        "version",
                        "providers",
                        "depends_on",
                        "count",
                        "for_each",
                    ];
                    let args = block
                        .body
                        .attributes()
                        .map(|a| a.key.as_str().to_owned())
                        .filter(|k| !meta.contains(&k.as_str()))
                        .collect();
                    m.calls.insert(name.clone(), (source, args));
                }
                ("resource", [kind, name]) => {
                    m.resources.insert(format!("{kind}.{name}"));
                    if let Some(a) = block.body.get_attribute("provider") {
                        m.provider_uses.push((
                            format!("{kind}.{name}"),
                            None,
                            a.value.to_string().trim().to_owned(),
                        ));
                    }
                }
                ("terraform", []) => {
                    for inner in block.body.blocks() {
                        if inner.ident.as_str() == "required_providers" {
                            m.required_providers
                                .extend(inner.body.attributes().map(|a| a.key.as_str().to_owned()));
                        }
                    }
                }
                (other, _) => panic!(
                    "{}: a block this test does not know: {other}",
                    file.display()
                ),
            }
        }
        m.refs.visit_body(&body);
    }
    m
}

/// Every directory under deploy/terraform that holds `.tf` files.
fn module_dirs() -> Vec<PathBuf> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) {
        let mut has_tf = false;
        for entry in std::fs::read_dir(dir).unwrap() {
            let p = entry.unwrap().path();
            if p.is_dir()
                && !p
                    .file_name()
                    .is_some_and(|n| n.to_string_lossy().starts_with('.'))
            {
                walk(&p, out);
            } else if p.extension().is_some_and(|x| x == "tf") {
                has_tf = true;
            }
        }
        if has_tf {
            out.push(dir.to_owned());
        }
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/terraform");
    let mut out = Vec::new();
    walk(&root, &mut out);
    out.sort();
    out
}

/// What is wrong in the module in `dir`: references to nothing, calls that do not fit.
fn problems(dir: &Path) -> Vec<String> {
    let m = read_module(dir);
    let mut bad = Vec::new();
    let kinds: BTreeSet<&str> = m
        .resources
        .iter()
        .filter_map(|r| r.split('.').next())
        .collect();
    for path in &m.refs.paths {
        let (root, rest) = (path[0].as_str(), &path[1..]);
        let name = rest.first().map(String::as_str).unwrap_or_default();
        let dangling = match root {
            "var" => !m.variables.contains_key(name),
            "local" => !m.locals.contains(name),
            "module" => match m.calls.get(name) {
                None => true,
                Some((source, _)) => rest
                    .get(1)
                    .is_some_and(|output| !read_module(&dir.join(source)).outputs.contains(output)),
            },
            "data" => !m.data.contains(&rest[..rest.len().min(2)].join(".")),
            kind if kinds.contains(kind) => !m.resources.contains(&format!("{kind}.{name}")),
            // for-expression variables, each, self, path, count, terraform: not declarations.
            _ => false,
        };
        if dangling {
            bad.push(format!(
                "{}: {} refers to nothing",
                dir.display(),
                path.join(".")
            ));
        }
    }
    for (user, key, config) in &m.provider_uses {
        // A provider without a block of its own has its default configuration.
        let declared = m.providers.contains(config)
            || (!config.contains('.') && m.required_providers.contains(config));
        if !declared {
            bad.push(format!(
                "{}: {user} names the provider configuration {config}, which is not declared",
                dir.display()
            ));
        }
        if let (Some(key), Some(call)) = (key, user.strip_prefix("module "))
            && let Some((source, _)) = m.calls.get(call)
            && !read_module(&dir.join(source))
                .required_providers
                .contains(key)
        {
            bad.push(format!(
                "{}: {user} is given the provider {key}, which {source} does not require",
                dir.display()
            ));
        }
    }
    for (name, (source, args)) in &m.calls {
        let callee = read_module(&dir.join(source));
        for a in args {
            if !callee.variables.contains_key(a) {
                bad.push(format!(
                    "{}: module {name} is given {a}, which {source} does not declare",
                    dir.display()
                ));
            }
        }
        for (v, defaulted) in &callee.variables {
            if !defaulted && !args.contains(v) {
                bad.push(format!(
                    "{}: module {name} is not given {v}, which {source} requires",
                    dir.display()
                ));
            }
        }
    }
    for t in &m.refs.templates {
        let path = t
            .trim()
            .trim_matches('"')
            .replace("${path.module}", &dir.to_string_lossy());
        if !Path::new(&path).is_file() {
            bad.push(format!("{}: the template {t} is not there", dir.display()));
        }
    }
    bad
}

#[test]
fn every_reference_in_the_terraform_resolves() {
    let dirs = module_dirs();
    let names: Vec<String> = dirs
        .iter()
        .map(|d| d.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    // The config module and the local example, at least: a walk that found none checks nothing.
    assert!(
        names.contains(&"mesh-config".to_owned()) && names.contains(&"local".to_owned()),
        "{names:?}"
    );
    let bad: Vec<String> = dirs.iter().flat_map(|d| problems(d)).collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

/// The checks find what they are for: a module with a reference to an undeclared variable or
/// data source, a call that misses a required variable, a missing template, and provider
/// configurations that are not declared or not wanted.
#[test]
fn dangling_references_missing_arguments_templates_and_providers_are_found() {
    let dir = tempfile::tempdir().unwrap();
    let callee = dir.path().join("callee");
    std::fs::create_dir(&callee).unwrap();
    std::fs::write(
        callee.join("main.tf"),
        r#"
variable "needed" { type = string }
output "text" { value = templatefile("${path.module}/gone.tftpl", { v = var.needed }) }
"#,
    )
    .unwrap();
    let caller = dir.path().join("caller");
    std::fs::create_dir(&caller).unwrap();
    std::fs::write(
        caller.join("main.tf"),
        r#"
provider "aws" {
  alias = "east"
}
module "c" {
  source    = "../callee"
  other     = var.missing
  providers = { aws = aws.west }
}
resource "aws_eip" "e" {
  provider = aws.north
}
output "x" { value = module.c.nothing }
output "y" { value = data.aws_ami.gone.id }
"#,
    )
    .unwrap();
    let found = [problems(&callee), problems(&caller)].concat().join("\n");
    for want in [
        "the template \"${path.module}/gone.tftpl\" is not there",
        "var.missing refers to nothing",
        "module.c.nothing refers to nothing",
        "module c is given other",
        "module c is not given needed",
        "module c names the provider configuration aws.west, which is not declared",
        "module c is given the provider aws, which ../callee does not require",
        "aws_eip.e names the provider configuration aws.north, which is not declared",
        "data.aws_ami.gone refers to nothing",
    ] {
        assert!(found.contains(want), "{want:?} not in:\n{found}");
    }
}
