-- nxops for Neovim 0.7 (Debian bookworm's neovim): one nxops sidecar per Nx
-- workspace, started for every buffer under a folder with nx.json.
-- :NxopsHealth shows the health report; Critical health and failed processes
-- are announced with vim.notify.
local nxops = { clients = {} }

local function nx_root(path)
  local found = vim.fn.findfile('nx.json', vim.fn.fnamemodify(path, ':p:h') .. ';')
  if found == '' then return nil end
  return vim.fn.fnamemodify(found, ':p:h')
end

local handlers = {
  ['nxops/healthCheck'] = function(_, report)
    if report.changed and report.rating == 'Critical' then
      vim.notify('nxops: ' .. report.workspace .. ' is Critical: ' .. table.concat(report.reasons, '; '), vim.log.levels.WARN)
    end
  end,
  ['nxops/processFailure'] = function(_, event)
    vim.notify(('nxops: process "%s" failed (%s)'):format(event.name, event.reason), vim.log.levels.WARN)
  end,
}

function nxops.attach(buf)
  local name = vim.api.nvim_buf_get_name(buf)
  local root = nx_root(name ~= '' and name or vim.fn.getcwd() .. '/')
  if not root then return end
  if not nxops.clients[root] then
    nxops.clients[root] = vim.lsp.start_client({
      name = 'nxops',
      cmd = { 'nxops', 'serve', '--stdio' },
      root_dir = root,
      handlers = handlers,
      -- init_options = { settings = { ['cache.maxSize'] = '10GB' } },
      on_init = function(client)
        client.request('nxops/subscribe', { events = { 'healthCheck', 'processFailure' } }, function() end)
      end,
      on_exit = function() nxops.clients[root] = nil end,
    })
  end
  if nxops.clients[root] then vim.lsp.buf_attach_client(buf, nxops.clients[root]) end
end

function nxops.health()
  for _, client in pairs(vim.lsp.get_active_clients()) do
    if client.name == 'nxops' then
      client.request('nxops/health', vim.empty_dict(), function(err, report)
        if err then return vim.notify('nxops: ' .. err.message, vim.log.levels.ERROR) end
        local lines = { ('nxops health: %s (%d/100)'):format(report.rating, report.score) }
        for _, c in ipairs(report.components) do
          table.insert(lines, ('  %-10s %3d  %s'):format(c.name, c.score, table.concat(c.reasons, '; ')))
        end
        vim.notify(table.concat(lines, '\n'), vim.log.levels.INFO)
      end)
    end
  end
end

vim.api.nvim_create_autocmd({ 'BufReadPost', 'BufNewFile' }, {
  callback = function(args) nxops.attach(args.buf) end,
})
vim.api.nvim_create_user_command('NxopsHealth', nxops.health, {})
_G.nxops = nxops
