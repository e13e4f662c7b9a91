defmodule DistributedSupervisor.DoctestTest do
  use ExUnit.Case, async: false

  doctest DistributedSupervisor
  doctest DistributedSupervisor.Ring
  doctest DistributedSupervisor.ValidationError
end
