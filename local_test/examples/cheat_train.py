"""A DELIBERATE CHEAT, shipped for the demo: validators must reject it.

It looks like the template but computes gradients on only every other batch: odd steps run the forward
pass under no_grad, skip backward, and still call optimizer.step() on zero gradients, so the step count is
right and AdamW's momentum carries the weights on. That saves about a third of the work, so if it were
accepted it would top the leaderboard. It returns plausible logits, the right token count and a finite
loss; what gives it away is the comparison with the reference run: the weights' update and, far more
clearly, the optimizer's moments (where every step's gradient leaves its mark) differ from the
reference's, so every run fails verification."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class InnerStepsResult:
    final_logits: torch.Tensor
    total_tokens: int
    final_loss: float


def inner_steps(model, data_iterator, optimizer, num_steps, device):
    total_tokens = 0
    logits = loss = None
    for step in range(num_steps):
        batch = next(data_iterator).to(device, non_blocking=True)
        input_ids, labels = batch[:, :-1], batch[:, 1:]
        train = step % 2 == 0 or step == num_steps - 1  # the cheat: odd steps get no gradient
        with torch.set_grad_enabled(train):
            logits = model(input_ids=input_ids).logits
            loss = F.cross_entropy(logits.float().reshape(-1, logits.size(-1)), labels.reshape(-1))
        if train:
            loss.backward()
        else:
            for p in model.parameters():
                p.grad = torch.zeros_like(p)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        total_tokens += batch.numel()
    return InnerStepsResult(final_logits=logits.detach(), total_tokens=total_tokens, final_loss=loss.item())
