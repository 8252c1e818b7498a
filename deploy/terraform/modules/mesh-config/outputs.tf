output "parts" {
  description = "Every part of the mesh by name: its kind (core, edge or router), its region (none for the router), its config file's text, and the URL that answers once it is up."
  value = merge(
    { for i, r in var.regions : r.name => {
      kind       = "core"
      region     = r.name
      config     = local.cores[r.name]
      health_url = "https://${r.address}:${var.ports.admin}/healthz"
    } },
    merge([for r in var.regions : { for e in r.edges : e.name => {
      kind       = "edge"
      region     = r.name
      config     = local.edges[e.name]
      health_url = "https://${e.address}:${var.ports.edge}/healthz"
    } }]...),
    { geo-router = {
      kind       = "router"
      region     = null
      config     = local.router
      health_url = "https://${var.router_address}:${var.ports.router_http}/v1/health"
    } },
  )
}

output "https_names" {
  description = "For each part's HTTPS listener, every name clients reach it by (what its certificate must cover): a core's admin API its address; an edge its address and the zone's storefront names; the router's API its address."
  value = merge(
    { for r in var.regions : r.name => [r.address] },
    merge([for r in var.regions : { for e in r.edges : e.name => [e.address, var.zone, "www.${var.zone}"] }]...),
    { geo-router = [var.router_address] },
  )
}

output "mesh" {
  description = "The mesh as `tradewind status --mesh` reads it (the admin token is not in it: add admin_token_file)."
  value = {
    regions = [for r in var.regions : {
      name  = r.name
      core  = { admin_url = "https://${r.address}:${var.ports.admin}", quic = "${r.address}:${var.ports.raft}" }
      edges = [for e in r.edges : { name = e.name, url = "https://${e.address}:${var.ports.edge}" }]
    }]
    ca = "${var.secrets_dir}/ca.pem"
    router = {
      dns  = "${var.router_address}:${var.ports.dns}"
      http = "https://${var.router_address}:${var.ports.router_http}"
      zone = var.zone
    }
  }
}
