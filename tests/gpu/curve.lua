-- The training run both GPU curve tests compare: a small LM trained with
-- AdamW for `steps` steps on fixed batches, returning the losses and the LM
-- (still open, for checks on its buffers).
--   local curve = dofile(dir .. "curve.lua")
--   local losses, lm = curve{data = ds, model = {...}, steps = 200, lr = 1e-3, batch = 8, seq = 64}
local gqe = require "gqe"

return function(o)
  local lm = gqe.nn.LM(o.model)
  local opt = gqe.optim.AdamW(lm, {lr = o.lr, beta1 = 0.9, beta2 = 0.95, weight_decay = 0.1})
  local losses = {}
  for s = 0, o.steps - 1 do
    local tok, tgt = o.data:batch("train", s, o.batch, o.seq)
    losses[#losses + 1] = lm:loss(tok, tgt, 0.01)
    lm:backward()
    opt:clip(1.0)
    opt:step()
    opt:zero_grad()
    lm:after_step()
  end
  return losses, lm
end
