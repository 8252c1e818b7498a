output "mesh" {
  description = "The mesh description `tradewind status --mesh` reads (`terraform output -json mesh > mesh.json`)."
  value = merge(module.config.mesh, {
    admin_token_file = var.admin_token_file == null ? null : abspath(var.admin_token_file)
  })
  depends_on = [terraform_data.part]
}
