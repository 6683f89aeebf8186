"""Local runtime: what AWS does around the Lambdas, emulated on one machine. Not in the Lambda package."""
