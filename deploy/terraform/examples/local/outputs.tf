output "mesh" {
  description = "The mesh description `tradewind status --mesh` reads (`terraform output -json mesh > mesh.json`)."
  value = merge(module.config.mesh, {
    admin_token_file = var.admin_token_file == null ? null : abspath(var.admin_token_file)
    identity         = "${local.dir}/identity"
    proxy = {
      api   = "http://${local.proxy_api}"
      links = [for l in local.links : merge(l, { rtt_ms = 0 })]
    }
    # How `tradewind chaos` kills, stops and starts a part (`{part}`: its name).
    control = {
      kill  = "${local.sh_script} kill ${local.sh_dir} {part}"
      stop  = "${local.sh_script} term ${local.sh_dir} {part}"
      start = "${local.sh_script} again ${local.sh_dir} {part}"
    }
  })
  depends_on = [terraform_data.part]
}
